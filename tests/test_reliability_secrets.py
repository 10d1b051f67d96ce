"""Reliability suite, secrets audit: runs that succeed and runs that fail at each step, on both
backends, then every place a secret could land is searched for the Together API key, the HF
token, the AWS secret key and every presigned signature Together was given: captured stdout
and stderr, the logs, the Prefect home (results, caches), the server's SQLite database (flow
and task runs, states, artifacts, logs, events) and the failed runs' exception texts and reprs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions
from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from prefect_together_lora.together.backend import ServingOptions
from tests.helpers import BASE_8B, put_file, secret_hits

pytestmark = [pytest.mark.reliability, pytest.mark.together_emulator(dedicated_only=False)]

HF_TOKEN = "hf_" + "S" * 34
FAST_JOB = JobOptions(poll_initial_s=0.05, poll_max_s=0.2, max_wait_s=30)
SERVE = ServingOptions(poll_initial_s=0.05, poll_max_s=0.2, ready_timeout_s=20)
STEPS = ["none", "validate", "import", "serve", "gate"]
# where each injected failure must stop the run
FAILED_STEP = {
    **{(api, "validate"): ("validate",) for api in ("v1", "v2")},
    **{(api, "import"): ("await_job",) for api in ("v1", "v2")},
    ("v1", "serve"): ("smoke_infer",),
    ("v2", "serve"): ("serve",),
    **{(api, "gate"): ("evaluate",) for api in ("v1", "v2")},
}
PROMPTS = {"What is 2+2?": "4", "What is 3+3?": "6"}


def adapter_url(s3_bucket: Any, tmp_path: Path, key: str, rank: int = 8) -> str:
    folder = write_adapter(tmp_path / key, BASE_8B, rank=rank, modules=("q_proj",))
    archive = zip_folder(folder, tmp_path / f"{key}.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, f"{key}.zip", archive)
    return f"s3://{s3_bucket.bucket}/{key}.zip"


def signatures(emulator: Any, api: str) -> list[str]:
    """Every presigned URL's signature Together was given, from the emulator's own records."""
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    if api == "v1":
        jobs = httpx.get(f"{emulator.base_url}/v1/jobs", headers=headers).json()["data"]
        urls = [j["args"]["modelSource"] for j in jobs]
    else:
        with emulator.v2_client() as client:
            urls = [u.remote_url.get_secret_value() for u in client.list_uploads() if u.remote_url]
    return [u.split("X-Amz-Signature=")[1] for u in urls if "X-Amz-Signature=" in u]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_no_secret_anywhere_after_a_run(
    api: str,
    step: str,
    prefect_harness: Path,
    prefect_home: Path,
    together_emulator: Any,
    s3_bucket: Any,
    tmp_path: Path,
    caplog: Any,
    capfd: Any,
    case: Any,
) -> None:
    from prefect.blocks.system import Secret

    outcome = "Completed" if step == "none" else f"Failed at {step}"
    case.expect(f"{outcome}; 0 secret hits")
    Secret(value=HF_TOKEN).save("hf-token-audit", overwrite=True)
    name = f"audit-{api}-{step}"
    admin = together_emulator.admin
    extra: dict[str, Any] = {}
    smoke = SmokeOptions(prompts=["Say hello."], retry_interval_s=0.05, ready_timeout_s=20)
    if step == "import":
        admin.configure(**({"base_models": "C"} if api == "v1" else {"max_restarts": 0}))
        if api == "v2":
            admin.configure(upload_error_restarts=1)
    elif step == "serve":
        if api == "v2":
            admin.configure(deployment_fails=True)
        else:  # serverless v1: the adapter never answers, so the smoke test fails
            admin.configure(cold_start_calls=10_000)
            smoke = smoke.model_copy(update={"ready_timeout_s": 0.5})
    elif step == "gate":
        eval_path = tmp_path / "eval.jsonl"
        eval_path.write_text(
            "\n".join(
                json.dumps({"id": f"q{i}", "prompt": p, "expected": a})
                for i, (p, a) in enumerate(PROMPTS.items())
            )
        )
        adapter_model = f"devuser/{name}" if api == "v1" else f"acme-research/{name}"
        for prompt in PROMPTS:
            admin.script(adapter_model, prompt, "no idea")
        extra["evaluation"] = EvalOptions(eval_set=str(eval_path), min_score=0.9)
    source = adapter_url(s3_bucket, tmp_path, name, rank=128 if step == "validate" else 8)
    state = publish_adapter(
        source=source,
        base_model=BASE_8B,
        model_name=name,
        api=api,
        credentials=together_emulator.credentials(),
        hf_token_secret="hf-token-audit",
        job=FAST_JOB,
        serving=SERVE,
        smoke=smoke,
        teardown="delete",
        return_state=True,
        **extra,
    )
    assert state.is_completed() if step == "none" else state.is_failed(), state.message
    failure = state.result(raise_on_failure=False)
    texts = [str(state.message), repr(failure), str(failure)]
    if isinstance(failure, BaseException):
        result = failure.publish_result  # type: ignore[attr-defined]
        assert result.failed_step in FAILED_STEP[(api, step)], result.failed_step
        texts += [repr(failure.args), result.model_dump_json()]
    sigs = signatures(together_emulator, api)
    if step not in ("validate",):
        assert sigs, "the run gave Together no presigned URL: nothing was audited"
    captured = capfd.readouterr()
    needles = [together_emulator.api_key, HF_TOKEN, s3_bucket.env["AWS_SECRET_ACCESS_KEY"], *sigs]
    hits = secret_hits(
        needles,
        prefect_home,
        prefect_harness,
        "\n".join([caplog.text, captured.out, captured.err, *texts]),
    )
    case.saw(f"{state.type.value}; {len(needles)} secrets, {len(hits)} hits")
    assert not hits
