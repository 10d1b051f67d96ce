"""The v2 backend against the emulator, no Prefect: project resolution, reconciled imports (never
two uploads for one adapter), Together's validation errors as findings, failed and restarted
uploads, etags, serving checks (LoRA capability, base, capacity), failures that list what they
created, and teardown in Together's order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from prefect_together_lora.client import Call
from prefect_together_lora.errors import (
    ConflictError,
    InvalidRequestError,
    JobFailed,
    ModelNameTaken,
    ServingFailed,
)
from prefect_together_lora.options import JobOptions
from prefect_together_lora.polling import wait_for_import
from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from prefect_together_lora.testing.emulator.catalog_v2 import BASES
from prefect_together_lora.together.backend import AdapterSpec, ServingOptions
from prefect_together_lora.together.v2_client import TogetherV2Client
from tests.helpers import BASE_8B, put_file, raw_presign, user_deployment

FAST = JobOptions(poll_initial_s=0.05, poll_max_s=0.2, max_wait_s=30)
SERVE = ServingOptions(poll_initial_s=0.05, poll_max_s=0.2, ready_timeout_s=20)
QWEN_14B = "Qwen/Qwen2.5-14B-Instruct"


def presigned(s3_bucket, tmp_path: Path, key: str, base: str = BASE_8B, **adapter: Any) -> str:
    folder = write_adapter(tmp_path / key, base, **adapter)
    archive = zip_folder(folder, tmp_path / f"{key}.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, f"{key}.zip", archive)
    return raw_presign(s3_bucket.client, s3_bucket.bucket, f"{key}.zip")


def spec(name: str, source: str, base: str = BASE_8B) -> AdapterSpec:
    return AdapterSpec(name=name, source_url=SecretStr(source), base_model=base)


def imported(backend, name: str, source: str, base: str = BASE_8B):
    handle = backend.import_adapter(spec(name, source, base))
    wait_for_import(backend, handle, FAST)
    return handle


def test_project_from_env_whoami_and_org_keys(together_emulator, monkeypatch) -> None:
    url, key = together_emulator.base_url, together_emulator.api_key
    with TogetherV2Client(key, url) as client:  # discovered through GET /v3/whoami
        assert client.project_id == "proj_emulator0001"
        assert client.project_slug == "acme-research"
    monkeypatch.setenv("TOGETHER_PROJECT_ID", "proj_other")
    with TogetherV2Client(key, url) as client:
        assert client.project_id == "proj_other"
        with pytest.raises(Exception, match="does not have access to project proj_other"):
            client.list_models()
    together_emulator.admin.configure(org_keys=["org-key"])
    monkeypatch.delenv("TOGETHER_PROJECT_ID")
    with TogetherV2Client("org-key", url) as client, pytest.raises(ValueError, match="project"):
        _ = client.project_id


def test_base_model_resolution(together_emulator) -> None:
    with together_emulator.backend() as backend:
        base = next(b for b in BASES if b.name == BASE_8B)
        assert backend.resolve_base_model(BASE_8B) == base.weights_id
        assert backend.resolve_base_model("ml_passthrough") == "ml_passthrough"
        with pytest.raises(ValueError, match="catalog"):
            backend.resolve_base_model(base.arch_id)
        with pytest.raises(ValueError, match="not in Together's supported models"):
            backend.resolve_base_model("acme/unknown-base")


@pytest.mark.reliability("lost upload answer: one upload")
def test_import_is_reconciled_never_duplicated(together_emulator, s3_bucket, tmp_path) -> None:
    source = presigned(s3_bucket, tmp_path, "a")
    uploads = r"/v2/projects/[^/]+/models/uploads"
    with together_emulator.backend() as backend:
        # the answer to the upload POST is lost after Together created it
        together_emulator.admin.fault(uploads, method="POST", drop="after")
        first = backend.import_adapter(spec("bot", source))
        assert first.created_record and first.job_id.startswith("job_")
        again = backend.import_adapter(spec("bot", source))  # a re-run, its cache gone
        assert again.reused and again.job_id == first.job_id and not again.created_record
        timeline = wait_for_import(backend, first, FAST)
        assert [e.kind for e in timeline][-1] == "validation.succeeded"
        assert len(backend.client.list_uploads()) == 1
        posts = together_emulator.admin.requests(method="POST")
        assert sum(bool(p["path"].endswith("/models/uploads")) for p in posts) == 1
        # the same name now holds these weights: another adapter under it is refused
        other = presigned(s3_bucket, tmp_path, "b", rank=4)
        with pytest.raises(ModelNameTaken, match="already holds weights"):
            backend.import_adapter(spec("bot", other))
        # a record of another base under the name is refused too
        with pytest.raises(ModelNameTaken, match="base"):
            backend.import_adapter(spec("bot", source, "Qwen/Qwen2.5-72B-Instruct"))
    secret = source.split("?", 1)[1]
    assert not any(secret in str(e) for e in together_emulator.admin.requests())


@pytest.mark.reliability("Together's validation errors: findings")
def test_validation_errors_become_findings(together_emulator, s3_bucket, tmp_path) -> None:
    source = presigned(s3_bucket, tmp_path, "big", rank=128)
    with together_emulator.backend() as backend:
        handle = backend.import_adapter(spec("too-big", source))
        with pytest.raises(JobFailed) as failed:
            wait_for_import(backend, handle, FAST)
    exc = failed.value
    assert [f.code for f in exc.findings] == ["TOGETHER_LORA_RANK"]
    assert "rank 128 exceeds maximum 64" in exc.findings[0].message
    assert exc.model_id == handle.model_id and exc.timeline[-1].level == "error"


@pytest.mark.together_emulator(min_url_lifetime_s=100 * 60)
def test_short_lived_url_fails_the_upload(together_emulator, s3_bucket, tmp_path) -> None:
    folder = write_adapter(tmp_path / "s", BASE_8B)
    put_file(s3_bucket.client, s3_bucket.bucket, "s.zip", zip_folder(folder, tmp_path / "s.zip"))
    source = raw_presign(s3_bucket.client, s3_bucket.bucket, "s.zip", expires=600)
    with together_emulator.backend() as backend:
        handle = backend.import_adapter(spec("short", source))
        with pytest.raises(JobFailed, match="at least 100 minutes") as failed:
            wait_for_import(backend, handle, FAST)
    assert "?" not in str(failed.value)  # no signature in the message


@pytest.mark.together_emulator(upload_error_restarts=2)
@pytest.mark.reliability("ERROR with restarts left: continues")
def test_upload_errors_with_restarts_left_keep_going(together_emulator, s3_bucket, tmp_path):
    source = presigned(s3_bucket, tmp_path, "r")
    with together_emulator.backend() as backend:
        handle = backend.import_adapter(spec("restarted", source))
        timeline = wait_for_import(backend, handle, FAST)
    assert sum(e.kind == "upload.restarted" for e in timeline) == 2


@pytest.mark.together_emulator(upload_error_restarts=5, max_restarts=3)
@pytest.mark.reliability("ERROR out of restarts: JobFailed")
def test_upload_out_of_restarts_fails(together_emulator, s3_bucket, tmp_path) -> None:
    source = presigned(s3_bucket, tmp_path, "r")
    with together_emulator.backend() as backend:
        handle = backend.import_adapter(spec("crashing", source))
        with pytest.raises(JobFailed, match="restart"):
            wait_for_import(backend, handle, FAST)


@pytest.mark.reliability("stale etag: re-read once, applied")
def test_stale_etag_is_reread_once(together_emulator) -> None:
    stale = {"error": {"message": "etag mismatch", "type": "invalid_request_error"}}
    with together_emulator.v2_client() as client:
        endpoint = client.create_endpoint("etags")
        together_emulator.admin.fault(
            rf"/v2/projects/[^/]+/endpoints/{endpoint.id}", method="PATCH", status=409, body=stale
        )
        updated = client.set_traffic(endpoint.id, lambda split: split)
        assert updated.etag != endpoint.etag
        patches = together_emulator.admin.requests(method="PATCH")
        assert [p["status"] for p in patches] == [409, 200]  # re-read, then one more write
        together_emulator.admin.fault(
            rf"/v2/projects/[^/]+/endpoints/{endpoint.id}",
            method="PATCH",
            status=409,
            body=stale,
            times=2,
        )
        with pytest.raises(ConflictError):
            client.set_traffic(endpoint.id, lambda split: split)


def test_attach_checks_lora_capability_base_and_capacity(
    together_emulator, s3_bucket, tmp_path
) -> None:
    with together_emulator.backend() as backend, together_emulator.v2_client() as client:
        source = presigned(s3_bucket, tmp_path, "q0", base=QWEN_14B)
        first = imported(backend, "qwen-0", source, QWEN_14B)
        plain, _ = user_deployment(client, backend, BASE_8B, "ADAPTER_MODE_DISABLED", "plain")
        handle8 = imported(backend, "llama", presigned(s3_bucket, tmp_path, "l"))
        with pytest.raises(ServingFailed, match="cannot host LoRA adapters") as refused:
            backend.serve(handle8, SERVE.model_copy(update={"mode": "attach", "endpoint": "plain"}))
        assert refused.value.resources == []  # nothing was created
        with pytest.raises(ServingFailed, match="base"):
            backend.serve(first, SERVE.model_copy(update={"mode": "attach", "endpoint": plain.id}))
        with pytest.raises(ServingFailed, match=r"attach' needs serving\.endpoint"):
            backend.serve(first, SERVE.model_copy(update={"mode": "attach"}))
        # a Qwen2.5-14B LoRA deployment holds 5 adapters
        user_deployment(client, backend, QWEN_14B, "ADAPTER_MODE_DYNAMIC", "shared")
        attach = SERVE.model_copy(update={"mode": "attach", "endpoint": "shared"})
        handles = [first] + [
            imported(
                backend,
                f"qwen-{i}",
                presigned(s3_bucket, tmp_path, f"q{i}", base=QWEN_14B, rank=4 + i),
                QWEN_14B,
            )
            for i in range(1, 6)
        ]
        for handle in handles[:5]:
            report = backend.serve(handle, attach)
            assert report.mode == "attach" and report.adapter_model == handle.model_name
            assert [r.kind for r in report.resources if r.created] == ["attachment"]
        with pytest.raises(ServingFailed, match=r"capacity.*force=true"):
            backend.serve(handles[5], attach)
        forced = backend.serve(handles[5], attach.model_copy(update={"force": True}))
        attached = client.list_attachments(forced.endpoint_id, forced.deployment_id)
        assert len(attached) == 5 and first.model_id not in {a.adapter_model_id for a in attached}


@pytest.mark.together_emulator(deploy_never_ready=True)
@pytest.mark.reliability("never READY: listed, torn down")
def test_never_ready_lists_what_it_created_and_teardown_removes_it(
    together_emulator, s3_bucket, tmp_path
) -> None:
    with together_emulator.backend() as backend:
        handle = imported(backend, "stuck", presigned(s3_bucket, tmp_path, "s"))
        options = SERVE.model_copy(update={"ready_timeout_s": 0.5})
        with pytest.raises(ServingFailed, match="not READY after") as failed:
            backend.serve(handle, options)
        created = failed.value.resources
        assert {r.kind for r in created} == {"endpoint", "deployment"}
        final = backend.teardown(handle, created, "delete", keep_model=True)
        assert {r.kind: r.state for r in final} == {
            "endpoint": "deleted",
            "deployment": "deleted",
            "model": "kept",
        }
        assert backend.client.list_endpoints() == []
        assert backend.client.get_model(handle.model_id or "").id == handle.model_id


@pytest.mark.together_emulator(adapter_load_fails=True)
@pytest.mark.reliability("adapter load FAILED: ServingFailed")
def test_adapter_load_failure_is_reported(together_emulator, s3_bucket, tmp_path) -> None:
    with together_emulator.backend() as backend:
        handle = imported(backend, "broken", presigned(s3_bucket, tmp_path, "b"))
        with pytest.raises(ServingFailed, match=r"failed to load.*probe failed") as failed:
            backend.serve(handle, SERVE)
    assert {r.kind for r in failed.value.resources} == {"endpoint", "deployment", "attachment"}


def test_merged_deploy_and_scale_to_zero(together_emulator, s3_bucket, tmp_path) -> None:
    with together_emulator.backend() as backend:
        handle = imported(backend, "merged", presigned(s3_bucket, tmp_path, "m"))
        report = backend.serve(handle, SERVE.model_copy(update={"merge": True}))
        assert report.mode == "merge" and report.adapter_model == "acme-research/merged-ep"
        assert report.base_model is None and "base_model_string" in report.notes[0]
        final = backend.teardown(handle, report.resources, "scale-to-zero")
        assert {r.kind: r.state for r in final if r.kind != "model"} == {
            "endpoint": "live",
            "deployment": "stopped",
        }
        assert not any(r.bills and r.state == "live" for r in final)
        # a stopped endpoint answers endpoint_not_ready, as Together does
        with together_emulator.client() as client, pytest.raises(InvalidRequestError) as stopped:
            client.chat("acme-research/merged-ep", [{"role": "user", "content": "x"}])
        assert stopped.value.code == "endpoint_not_ready"
        # a re-run serving the same adapter scales the same deployment back up
        again = backend.serve(handle, SERVE.model_copy(update={"merge": True}))
        assert again.deployment_id == report.deployment_id and again.state.endswith("READY")
        backend.teardown(handle, again.resources, "delete")
        assert backend.client.list_endpoints() == [] and backend.client.list_models() == []


HF_TOKEN = "hf_" + "V" * 34


@pytest.mark.local_hub(private={"acme/private-bot": HF_TOKEN})
@pytest.mark.reliability("HF token used, never echoed")
def test_private_hub_repo_needs_the_token_which_is_never_echoed(together_emulator, local_hub):
    write_adapter(local_hub.repo("acme/private-bot"), BASE_8B)
    url = "https://huggingface.co/acme/private-bot"
    with together_emulator.backend() as backend:
        denied = backend.import_adapter(spec("hub-denied", url))
        with pytest.raises(JobFailed, match="private"):
            wait_for_import(backend, denied, FAST)
        handle = backend.import_adapter(
            AdapterSpec(
                name="hub-bot",
                source_url=SecretStr(url),
                base_model=BASE_8B,
                hf_token=SecretStr(HF_TOKEN),
            )
        )
        wait_for_import(backend, handle, FAST)
        upload = backend.client.send(
            Call("GET", f"/v2/projects/{handle.project_id}/models/uploads/{handle.job_id}")
        )
    assert HF_TOKEN not in upload.text and "token" not in upload.json()
