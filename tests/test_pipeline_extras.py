"""Pipeline details: content-hash names, the 404 right after submit, completion-mode and
dedicated-only smoke tests, emitted events, the training subflow, the catalog from a Prefect
Variable, and evaluation under Prefect global limits."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from prefect_together_lora.errors import JobTimedOut, NotFoundError
from prefect_together_lora.evaluation.dataset import EvalRow
from prefect_together_lora.options import EvalOptions, JobOptions, SmokeOptions
from prefect_together_lora.polling import wait_for_job
from prefect_together_lora.retry import RetryPolicy
from prefect_together_lora.smoke import run_smoke
from prefect_together_lora.testing.adapters import write_adapter
from tests.adapter_cases import catalog_entry
from tests.helpers import BASE_8B

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)

FAST_JOB = JobOptions(poll_initial_s=0.05, poll_max_s=0.1, max_wait_s=10, not_found_grace_s=5)


@pytest.mark.together_emulator(job_seconds=0.2)
@pytest.mark.reliability("404 right after submit: tolerated")
def test_404_right_after_submit_is_tolerated(together_emulator, local_hub) -> None:
    write_adapter(local_hub.repo("acme/early"), BASE_8B)
    with together_emulator.client() as client:
        up = client.upload_adapter("early", "acme/early", BASE_8B)
        together_emulator.admin.fault(
            rf"/v1/jobs/{up.job_id}",
            status=404,
            times=3,
            body={"error": {"message": "Job not found", "type": "invalid_request_error"}},
        )
        seen: list[str] = []
        job = wait_for_job(
            client,
            up.job_id,
            FAST_JOB,
            on_update=lambda j, fresh: seen.extend(u.message for u in fresh),
        )
    assert job.status.value == "Complete" and seen[0] == "Job created"
    assert len(seen) == len(set(seen))  # each status update reported once


@pytest.mark.together_emulator(job_seconds=60)
def test_404_beyond_the_grace_and_timeouts_raise(together_emulator) -> None:
    with together_emulator.client() as client:
        with pytest.raises(NotFoundError):
            wait_for_job(
                client, "job-unknown", JobOptions(poll_initial_s=0.01, not_found_grace_s=0.05)
            )
        up = client.upload_adapter("slow", "acme/r", BASE_8B)
        with pytest.raises(JobTimedOut, match=f"job_id={up.job_id}"):
            wait_for_job(client, up.job_id, JobOptions(poll_initial_s=0.01, max_wait_s=0.2))


@pytest.mark.together_emulator(job_seconds=60)
def test_smoke_modes_and_failures(together_emulator) -> None:
    with together_emulator.client() as client:
        up = client.upload_adapter("smoky", "acme/r", BASE_8B)
        together_emulator.admin.set_job_status(up.job_id, "Complete", "Job is Complete")
        report = run_smoke(
            client, up.model_name, SmokeOptions(mode="completion", prompts=["Once upon"])
        )
        assert report.passed and report.samples[0].finish_reason in ("eos", "length")
        together_emulator.admin.script(up.model_name, "Say nothing.", "")
        empty = run_smoke(client, up.model_name, SmokeOptions(prompts=["Say nothing."]))
        assert not empty.passed and empty.failures[0].output == ""
        together_emulator.admin.configure(dedicated_only=True)
        started = time.monotonic()
        dedicated = run_smoke(
            client, up.model_name, SmokeOptions(prompts=["hi"], ready_timeout_s=60)
        )
        assert time.monotonic() - started < 30  # no waiting out the timeout on a 400
        assert "dedicated endpoint" in (dedicated.samples[0].error or "")


def _published(together_emulator, s3_bucket, tmp_path: Path, **extra):
    from prefect_together_lora.flows import publish_adapter

    return publish_adapter(
        source=str(write_adapter(tmp_path / "a", BASE_8B)),
        base_model=BASE_8B,
        model_name="suffixed",
        credentials=together_emulator.credentials(),
        api="v1",
        staging_uri=f"s3://{s3_bucket.bucket}/stage",
        job=FAST_JOB,
        smoke=SmokeOptions(prompts=["hi"], retry_interval_s=0.05),
        return_state=True,
        **extra,
    )


@pytest.mark.together_emulator(job_seconds=0.2)
def test_name_suffix_auto_and_events(
    prefect_harness, together_emulator, s3_bucket, tmp_path: Path
) -> None:
    state = _published(together_emulator, s3_bucket, tmp_path, name_suffix="auto")
    assert state.is_completed(), state.message
    name = state.result().model_name
    assert re.fullmatch(r"devuser/suffixed-[0-9a-f]{8}", name)
    again = _published(together_emulator, s3_bucket, tmp_path, name_suffix="auto")
    assert again.result().model_name == name  # same content, same name

    from prefect.settings import PREFECT_API_URL

    def events() -> list[str]:
        response = httpx.post(
            f"{PREFECT_API_URL.value()}/events/filter",
            json={"filter": {"event": {"prefix": ["together.lora."]}}, "limit": 50},
        )
        found = [
            e
            for e in response.json()["events"]
            if e["resource"]["prefect.resource.name"] == name.split("/", 1)[1]
        ]
        # one resource for every event; the name to call rides along once it is known
        assert all(e["resource"].get("together.model", name) == name for e in found)
        return [e["event"] for e in found]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(set(events())) < 3:
        time.sleep(0.5)
    assert {"together.lora.validated", "together.lora.uploaded", "together.lora.ready"} <= set(
        events()
    )


@pytest.mark.together_emulator(job_seconds=0.2)
def test_training_flow_with_publish_subflow(
    prefect_harness, together_emulator, s3_bucket, tmp_path: Path
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from flows.train_and_publish import train_and_publish

    state = train_and_publish(
        output_dir=str(tmp_path / "out"),
        model_name="trained",
        staging_uri=f"s3://{s3_bucket.bucket}/stage",
        credentials=together_emulator.credentials(),
        return_state=True,
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.model_name == "acme-research/trained" and result.api == "v2"
    assert result.validation.adapter.dtype == "F16" and result.smoke.passed


def test_catalog_from_a_prefect_variable(prefect_harness, tmp_path: Path) -> None:
    from prefect.variables import Variable

    from prefect_together_lora.validation.catalog import load_catalog

    Variable.set(
        "together-lora-catalog",
        {"default_max_rank": 16, "models": [catalog_entry("acme/New-Base-8B")]},
        overwrite=True,
    )
    catalog = load_catalog(variable="together-lora-catalog")
    assert catalog.find("acme/New-Base-8B") is not None
    assert catalog.find(BASE_8B) is not None and catalog.default_max_rank == 16
    with pytest.raises(ValueError, match="not set"):
        load_catalog(variable="no-such-variable")


@pytest.mark.together_emulator(job_seconds=60)
def test_evaluation_under_prefect_global_limits(prefect_harness, together_emulator) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    from prefect_together_lora.tasks import evaluate

    async def create_limit() -> None:
        async with get_client() as client:
            try:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name="together-evals", limit=2)
                )
            except Exception as exc:  # already there from an earlier run of this test
                if "already exists" not in str(exc) and not isinstance(exc, ObjectNotFound):
                    raise

    asyncio.run(create_limit())
    with together_emulator.client() as client:
        up = client.upload_adapter("limited", "acme/r", BASE_8B)
    together_emulator.admin.set_job_status(up.job_id, "Complete", "Job is Complete")
    rows = [EvalRow(id=f"r{i}", prompt=f"q{i}", expected=["x"]) for i in range(4)]
    report = evaluate.fn(
        rows,
        up.model_name,
        BASE_8B,
        together_emulator.credentials(),
        EvalOptions(
            concurrency_limit_name="together-evals", answer_store="memory", rate_limit_strict=True
        ),
    )
    assert report.asked == 8 and report.errors == 0
    with pytest.raises(Exception, match=r"together-evals-missing|not found|does not exist"):
        evaluate.fn(
            rows,
            up.model_name,
            BASE_8B,
            together_emulator.credentials(),
            EvalOptions(
                rate_limit_name="together-evals-missing",
                answer_store="memory",
                rate_limit_strict=True,
            ),
        )
    assert json.loads(report.model_dump_json())["asked"] == 8


@pytest.mark.together_emulator(job_seconds=1.0)
@pytest.mark.reliability("27 s of 503s on polling: job followed")
def test_a_503_blip_on_job_polling_does_not_fail_the_wait(together_emulator, local_hub) -> None:
    """Six 503s in a row (more than the client's own retries) while the job runs: the wait
    goes on and ends with the completed job."""
    write_adapter(local_hub.repo("acme/blip"), BASE_8B)
    with together_emulator.client(retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01)) as c:
        up = c.upload_adapter("blip", "acme/blip", BASE_8B)
        together_emulator.admin.fault(rf"/v1/jobs/{up.job_id}", status=503, times=6)
        job = wait_for_job(c, up.job_id, FAST_JOB)
    assert job.status.value == "Complete"
