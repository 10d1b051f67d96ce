"""publish_adapter end to end on a Prefect test server, against the emulator, a strict local S3
and a local Hub: every source kind, idempotent re-runs, failures, artifacts, and secrets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from prefect_together_lora.errors import (
    AdapterInvalid,
    EvalBelowThreshold,
    JobFailed,
    JobTimedOut,
)
from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from tests.helpers import BASE_8B, put_file, read_artifacts, secret_hits

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)

FAST_JOB = JobOptions(poll_initial_s=0.05, poll_max_s=0.2, max_wait_s=30)
FAST_SMOKE = SmokeOptions(
    prompts=["Say hello.", "What is 2+2?"], retry_interval_s=0.05, ready_timeout_s=20
)
HF_TOKEN = "hf_" + "Q" * 34


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    return write_adapter(tmp_path / "adapter", BASE_8B)


def run(together_emulator, source: str, name: str, **extra: Any):
    params: dict[str, Any] = {
        "source": source,
        "base_model": BASE_8B,
        "model_name": name,
        "credentials": together_emulator.credentials(),
        "api": "v1",
        "job": FAST_JOB,
        "smoke": FAST_SMOKE,
    }
    params.update(extra)
    return publish_adapter(**params, return_state=True)


def stage_zip(s3_bucket, folder: Path, tmp_path: Path, key: str) -> str:
    """Zip an adapter folder into the test bucket; the s3:// source to publish."""
    put_file(s3_bucket.client, s3_bucket.bucket, key, zip_folder(folder, tmp_path / key))
    return f"s3://{s3_bucket.bucket}/{key}"


def task_states(flow_state) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])
                )
            )
        return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs if r.state}

    return asyncio.run(read())


def upload_calls(together_emulator) -> int:
    return len(together_emulator.admin.requests(method="POST", path="/v1/models"))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_s3_archive_publishes(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path, kind
) -> None:
    archive = (
        zip_folder(adapter_dir, tmp_path / "a.zip")
        if kind == "zip"
        else tar_folder(adapter_dir, tmp_path / "a.tar.gz")
    )
    put_file(s3_bucket.client, s3_bucket.bucket, f"runs/7/{archive.name}", archive)
    state = run(
        together_emulator,
        f"s3://{s3_bucket.bucket}/runs/7/{archive.name}",
        f"lora-{kind.replace('.', '')}",
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.verdict == "published" and result.model_name.startswith("devuser/lora-")
    assert result.validation.valid and result.new_upload
    assert result.timeline[-1].status == "Complete"
    assert result.smoke.passed and len(result.smoke.samples) == 2
    assert result.fingerprint.startswith("s3-etag:")


def test_local_folder_is_staged_and_rerun_uploads_nothing(
    prefect_harness, together_emulator, s3_bucket, adapter_dir
) -> None:
    staging = f"s3://{s3_bucket.bucket}/staging"
    first = run(together_emulator, str(adapter_dir), "lora-local", staging_uri=staging)
    assert first.is_completed(), first.message
    keys = [o["Key"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("staging/") and keys[0].endswith(".zip")
    assert upload_calls(together_emulator) == 1

    second = run(together_emulator, str(adapter_dir), "lora-local", staging_uri=staging)
    assert second.is_completed(), second.message
    assert upload_calls(together_emulator) == 1  # zero new upload calls
    states = task_states(second)
    assert states["validate"] == "Cached" and states["upload"] == "Cached"
    assert second.result().job_id == first.result().job_id
    assert not second.result().new_upload


def test_hub_repo_publishes(
    prefect_harness, together_emulator, local_hub, adapter_dir, monkeypatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    repo = local_hub.repo("acme/support-lora")
    for f in adapter_dir.iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    state = run(together_emulator, "hf://acme/support-lora", "lora-hub")
    assert state.is_completed(), state.message
    result = state.result()
    assert result.fingerprint.startswith("hf:acme/support-lora@")
    assert result.validation.requests <= 4


@pytest.mark.reliability("invalid adapter: failed before upload")
def test_invalid_adapter_fails_before_upload(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    nested = adapter_dir.parent / "nested"
    (nested / "my-lora").mkdir(parents=True)
    for f in adapter_dir.iterdir():
        (nested / "my-lora" / f.name).write_bytes(f.read_bytes())
    state = run(together_emulator, stage_zip(s3_bucket, nested, tmp_path, "n.zip"), "lora-nested")
    assert state.is_failed()
    with pytest.raises(AdapterInvalid, match="ARCHIVE_NESTED"):
        state.result()
    assert upload_calls(together_emulator) == 0


@pytest.mark.reliability("job Failed: flow fails, Together's reason")
def test_failed_job_fails_the_flow_with_togethers_message(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    together_emulator.admin.configure(base_models="C")  # Together dropped the 8B base
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "f.zip")
    state = run(together_emulator, source, "lora-fails")
    assert state.is_failed()
    with pytest.raises(JobFailed, match="is not supported for LoRA adapters"):
        state.result()


@pytest.mark.together_emulator(job_seconds=60)
@pytest.mark.reliability("stuck job: JobTimedOut")
def test_job_timeout(prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path) -> None:
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "t.zip")
    state = run(
        together_emulator,
        source,
        "lora-slow",
        job=JobOptions(poll_initial_s=0.05, poll_max_s=0.1, max_wait_s=0.5),
    )
    with pytest.raises(JobTimedOut, match=r"still '(Queued|Running)'"):
        state.result()


@pytest.mark.together_emulator(job_seconds=0.2, cold_start_calls=3)
@pytest.mark.reliability("cold start 503s: tolerated")
def test_cold_start_is_tolerated(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "c.zip")
    state = run(together_emulator, source, "lora-cold")
    assert state.is_completed(), state.message
    assert state.result().smoke.cold_start_retries >= 1


def write_eval(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.mark.parametrize(("adapter_right", "passes"), [(True, True), (False, False)])
def test_evaluation_gate(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path, adapter_right, passes
) -> None:
    name = f"lora-eval-{adapter_right}"
    rows = [
        {"id": f"q{i}", "prompt": f"What is {i}+{i}?", "expected": str(2 * i)} for i in range(6)
    ]
    eval_path = write_eval(tmp_path / "eval.jsonl", rows)
    for row in rows:
        together_emulator.admin.script(
            f"devuser/{name}", row["prompt"], row["expected"] if adapter_right else "no idea"
        )
    for row in rows[:2]:
        together_emulator.admin.script(BASE_8B, row["prompt"], row["expected"])
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "e.zip")
    state = run(
        together_emulator,
        source,
        name,
        evaluation=EvalOptions(
            eval_set=str(eval_path), min_score=0.8, min_improvement_over_base=0.2
        ),
    )
    if passes:
        assert state.is_completed(), state.message
        ev = state.result().evaluation
        assert ev.adapter_mean == 1.0 and ev.base_mean == pytest.approx(2 / 6)
        assert ev.wins == 4 and ev.ties == 2 and ev.passed
    else:
        with pytest.raises(EvalBelowThreshold, match="min_score"):
            state.result()


def test_gate_can_only_warn(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    eval_path = write_eval(tmp_path / "w.jsonl", [{"prompt": "x", "expected": "never"}])
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "w.zip")
    state = run(
        together_emulator,
        source,
        "lora-warn",
        evaluation=EvalOptions(eval_set=str(eval_path), min_score=0.5, on_fail="warn"),
    )
    assert state.is_completed(), state.message
    assert state.result().verdict == "published-gate-warning"


def test_artifacts_are_keyed_and_readable(
    prefect_harness, together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    eval_path = write_eval(
        tmp_path / "a.jsonl", [{"prompt": "hi", "expected": "hello", "metric": "contains"}]
    )
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "art.zip")
    state = run(
        together_emulator,
        source,
        "Lora_Art.v1",
        evaluation=EvalOptions(eval_set=str(eval_path)),
    )
    assert state.is_completed(), state.message
    artifacts = read_artifacts(state)
    for key in (
        "together-lora-report-lora-art-v1",
        "together-lora-smoke-devuser-lora-art-v1",
        "together-lora-job-devuser-lora-art-v1",
        "together-lora-eval-devuser-lora-art-v1",
        "together-lora-model-devuser-lora-art-v1",
    ):
        assert key in artifacts, sorted(artifacts)
    report = artifacts["together-lora-report-lora-art-v1"]
    assert "devuser/Lora_Art.v1" in report.data and "Import timeline" in report.data
    assert artifacts["together-lora-job-devuser-lora-art-v1"].data == 100.0
    smoke = json.loads(artifacts["together-lora-smoke-devuser-lora-art-v1"].data)
    assert len(smoke) == 2 and smoke[0]["output"]


@pytest.mark.reliability("v1 runs ok/failed: zero secret hits")
def test_secrets_appear_nowhere(
    prefect_harness,
    prefect_home,
    together_emulator,
    s3_bucket,
    local_hub,
    adapter_dir,
    tmp_path,
    monkeypatch,
    caplog,
) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    Secret(value=HF_TOKEN).save("hf-token-test", overwrite=True)
    source = stage_zip(s3_bucket, adapter_dir, tmp_path, "s.zip")
    ok = run(
        together_emulator,
        source,
        "lora-secret",
        hf_token_secret="hf-token-test",
    )
    assert ok.is_completed(), ok.message
    together_emulator.admin.configure(base_models="C")
    other = write_adapter(tmp_path / "b", BASE_8B, seed=3)
    failed = run(
        together_emulator,
        stage_zip(s3_bucket, other, tmp_path, "s2.zip"),
        "lora-secret-2",
        hf_token_secret="hf-token-test",
    )
    assert failed.is_failed()

    # the signatures Together saw: read them from the emulator's own job records
    import httpx

    jobs = httpx.get(
        f"{together_emulator.base_url}/v1/jobs",
        headers={"Authorization": f"Bearer {together_emulator.api_key}"},
    ).json()["data"]
    signatures = [j["args"]["modelSource"].split("X-Amz-Signature=")[1] for j in jobs]
    assert len(signatures) == 2
    needles = [together_emulator.api_key, HF_TOKEN, *signatures]
    assert not secret_hits(needles, prefect_home, prefect_harness, caplog.text)


def test_unparseable_source_still_leaves_a_report(prefect_harness, together_emulator) -> None:
    state = run(
        together_emulator, "ftp://example.invalid/adapter.zip?token=SECRETVALUE1", "lora-bad-source"
    )
    assert state.is_failed()
    report = read_artifacts(state)["together-lora-report-lora-bad-source"].data
    assert "Failed at `parse`" in report and "Accepted forms" in report
    assert "SECRETVALUE1" not in report
