"""publish_adapter on the v2 backend (the default), on a Prefect test server against the
emulator: deploy → smoke → evaluation against the base on the same deployment → teardown as
configured; a failed gate or a failed step leaves nothing the run created billing; attaching to
a user's own deployment never touches that deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prefect_together_lora.errors import EvalBelowThreshold, JobFailed, ServingFailed
from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.options import (
    EvalOptions,
    JobOptions,
    SmokeOptions,
    ValidationSettings,
)
from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from prefect_together_lora.together.backend import ServingOptions
from tests.helpers import BASE_8B, put_file, read_artifacts, secret_hits, user_deployment

FAST_JOB = JobOptions(poll_initial_s=0.05, poll_max_s=0.2, max_wait_s=30)
FAST_SMOKE = SmokeOptions(prompts=["Say hello."], retry_interval_s=0.05, ready_timeout_s=20)
SERVE = ServingOptions(poll_initial_s=0.05, poll_max_s=0.2, ready_timeout_s=20)
QUESTIONS = {
    "How do I reset my password?": "Settings, Security, Reset password.",
    "Where is my invoice?": "Billing, Invoices, Download.",
    "How do I add a teammate?": "Settings, Team, Invite.",
}


def stage(s3_bucket, tmp_path: Path, key: str) -> str:
    folder = write_adapter(tmp_path / key, BASE_8B)
    archive = zip_folder(folder, tmp_path / f"{key}.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, f"{key}.zip", archive)
    return f"s3://{s3_bucket.bucket}/{key}.zip"


def eval_set(tmp_path: Path) -> str:
    path = tmp_path / "eval.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "prompt": q, "expected": a, "metric": "token_f1"})
            for i, (q, a) in enumerate(QUESTIONS.items())
        )
    )
    return str(path)


def script(together_emulator, adapter: str, adapter_good: bool = True) -> None:
    """The adapter knows the answers (or not); the base does not."""
    for question, answer in QUESTIONS.items():
        together_emulator.admin.script(adapter, question, answer if adapter_good else "No idea.")
        together_emulator.admin.script(BASE_8B, question, "Please see the documentation.")


def run(together_emulator, source: str, name: str, **extra: Any):
    params: dict[str, Any] = {
        "source": source,
        "base_model": BASE_8B,
        "model_name": name,
        "credentials": together_emulator.credentials(),
        "serving": SERVE,
        "job": FAST_JOB,
        "smoke": FAST_SMOKE,
    }
    params.update(extra)
    return publish_adapter(**params, return_state=True)


def test_deploy_smoke_evaluate_and_keep(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    script(together_emulator, "acme-research/support-bot")
    state = run(
        together_emulator,
        stage(s3_bucket, tmp_path, "a"),
        "support-bot",
        evaluation=EvalOptions(eval_set=eval_set(tmp_path), min_delta_over_base=0.3),
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.verdict == "published" and result.api == "v2"
    assert result.model_name == "acme-research/support-bot" and result.model_id.startswith("ml_")
    assert result.revision_id.startswith("rv_") and result.job_id.startswith("job_")
    assert [e.kind for e in result.timeline][-1] == "validation.succeeded"
    serving = result.serving
    assert serving.mode == "attach" and serving.hardware == "1x H100-80GB"
    assert result.inference_model == "acme-research/support-bot"
    assert serving.base_model == "acme-research/support-bot-ep"
    assert result.smoke.passed
    ev = result.evaluation
    assert ev.base_model == "acme-research/support-bot-ep" and ev.base_error_rate == 0
    assert ev.adapter_mean > ev.base_mean and ev.passed
    # kept: the run's deployment is live and billing, and the report says so
    assert [r.kind for r in result.billing] == ["deployment"]
    report = read_artifacts(state)["together-lora-report-support-bot"].data
    assert "On Together after this run" in report and "1x H100-80GB" in report
    assert "1 resource(s) billing per replica-minute" in report


@pytest.mark.reliability("gate fails: nothing left billing")
def test_gate_failure_leaves_nothing_billing(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    script(together_emulator, "acme-research/weak-bot", adapter_good=False)
    state = run(
        together_emulator,
        stage(s3_bucket, tmp_path, "w"),
        "weak-bot",
        evaluation=EvalOptions(eval_set=eval_set(tmp_path), min_score=0.99),
    )
    assert state.is_failed()
    with pytest.raises(EvalBelowThreshold):
        state.result()
    with together_emulator.v2_client() as client:
        assert client.list_endpoints() == []  # stopped, out of the split, deleted
        models = client.list_models()
    assert [m.name for m in models] == ["acme-research/weak-bot"]  # the record (no cost) stays
    report = read_artifacts(state)["together-lora-report-weak-bot"].data
    assert "Failed at `evaluate`" in report and "Nothing this run created is billing" in report
    assert "delete (after the failure; model record kept)" in report


@pytest.mark.together_emulator(adapter_load_fails=True)
@pytest.mark.reliability("serving fails: cleaned up")
def test_serving_failure_cleans_up(prefect_harness, together_emulator, s3_bucket, tmp_path):
    state = run(together_emulator, stage(s3_bucket, tmp_path, "f"), "flaky-bot")
    assert state.is_failed()
    with pytest.raises(ServingFailed, match="failed to load"):
        state.result()
    with together_emulator.v2_client() as client:
        assert client.list_endpoints() == []


def test_attach_to_a_users_deployment_and_delete_only_what_was_made(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    with together_emulator.backend() as backend, together_emulator.v2_client() as client:
        endpoint, dep = user_deployment(
            client, backend, BASE_8B, "ADAPTER_MODE_DYNAMIC", "team-llama", max_replicas=2
        )
    state = run(
        together_emulator,
        stage(s3_bucket, tmp_path, "t"),
        "team-bot",
        serving=SERVE.model_copy(update={"mode": "attach", "endpoint": "team-llama"}),
        teardown="delete",
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.serving.deployment_id == dep.id and result.serving.max_replicas == 2
    assert {r.kind: (r.created, r.state) for r in result.resources} == {
        "attachment": (True, "detached"),
        "model": (True, "deleted"),
    }
    with together_emulator.v2_client() as client:
        kept = client.get_deployment(endpoint.id, dep.id)
        assert kept.state == "DEPLOYMENT_STATE_READY"  # the user's deployment is untouched
        assert client.list_attachments(endpoint.id, dep.id) == []
        assert client.list_models() == []


def test_serving_none_stops_once_validated(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    state = run(
        together_emulator,
        stage(s3_bucket, tmp_path, "n"),
        "quiet-bot",
        serving=ServingOptions(mode="none"),
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.verdict == "validated" and result.smoke is None and result.resources == []
    with together_emulator.v2_client() as client:
        assert client.list_endpoints() == []


def test_scale_to_zero_after_success(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    state = run(
        together_emulator,
        stage(s3_bucket, tmp_path, "z"),
        "sleepy-bot",
        teardown="scale-to-zero",
    )
    assert state.is_completed(), state.message
    result = state.result()
    states = {r.kind: r.state for r in result.resources}
    assert states["deployment"] == "stopped" and result.billing == []
    with together_emulator.v2_client() as client:
        dep = client.get_deployment(result.serving.endpoint_id, result.serving.deployment_id)
    assert dep.state == "DEPLOYMENT_STATE_STOPPED"


def test_togethers_validation_errors_are_findings_of_the_run(
    prefect_harness, together_emulator, s3_bucket, tmp_path
) -> None:
    """Our limits allow rank 128 here; Together's (64) do not: its revision fails validation
    and its errors appear among the run's findings."""
    folder = write_adapter(tmp_path / "big", BASE_8B, rank=128)
    archive = zip_folder(folder, tmp_path / "big.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, "big.zip", archive)
    state = run(
        together_emulator,
        f"s3://{s3_bucket.bucket}/big.zip",
        "big-bot",
        validation=ValidationSettings(max_rank=256),
    )
    assert state.is_failed()
    with pytest.raises(JobFailed, match="rank 128 exceeds maximum 64"):
        state.result()
    artifacts = read_artifacts(state)
    findings = artifacts["together-lora-findings-acme-research-big-bot"].data
    assert "TOGETHER_LORA_RANK" in findings
    assert "Failed at `await_job`" in artifacts["together-lora-report-big-bot"].data


@pytest.mark.reliability("v2 runs ok/failed: zero secret hits")
def test_no_secret_anywhere_after_v2_runs(
    prefect_harness, prefect_home, together_emulator, s3_bucket, tmp_path, caplog
) -> None:
    ok = run(together_emulator, stage(s3_bucket, tmp_path, "s1"), "secret-ok", teardown="delete")
    assert ok.is_completed(), ok.message
    together_emulator.admin.configure(adapter_load_fails=True)
    failed = run(together_emulator, stage(s3_bucket, tmp_path, "s2"), "secret-failed")
    assert failed.is_failed()
    with together_emulator.v2_client() as client:  # the URLs Together was given
        urls = [u.remote_url.get_secret_value() for u in client.list_uploads() if u.remote_url]
    signatures = [u.split("X-Amz-Signature=")[1] for u in urls]
    assert len(signatures) == 2
    needles = [together_emulator.api_key, *signatures]
    assert not secret_hits(needles, prefect_home, prefect_harness, caplog.text)
