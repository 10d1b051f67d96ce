"""The emulator's upload jobs do the real work: download from a presigned URL (strict local S3)
or a Hub repo (local Hub), check the archive and the adapter, and end Complete or Failed with a
message like Together's troubleshooting notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_together_lora.schemas import JobStatus
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from tests.helpers import BASE_8B, put_file, raw_presign, wait_job

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    return write_adapter(tmp_path / "adapter", BASE_8B)


def upload_archive(s3_bucket, archive: Path, key: str | None = None, expires: int = 6 * 3600):
    key = key or archive.name
    put_file(s3_bucket.client, s3_bucket.bucket, key, archive)
    return raw_presign(s3_bucket.client, s3_bucket.bucket, key, expires)


def run_job(
    together_emulator,
    source: str,
    base: str = BASE_8B,
    name: str = "lora",
    hf_token: str | None = None,
):
    with together_emulator.client() as client:
        up = client.upload_adapter(name, source, base, hf_token=hf_token)
        return client, wait_job(client, up.job_id), up


@pytest.mark.parametrize("kind", ["zip", "zip-stored", "tar.gz"])
def test_archive_from_presigned_url_completes_and_serves(
    together_emulator, s3_bucket, adapter_dir, tmp_path, kind
) -> None:
    if kind == "tar.gz":
        archive = tar_folder(adapter_dir, tmp_path / "a.tar.gz")
    else:
        archive = zip_folder(adapter_dir, tmp_path / "a.zip", compress=kind == "zip")
    url = upload_archive(s3_bucket, archive)
    _client, job, up = run_job(together_emulator, url)
    assert job.status == JobStatus.COMPLETE, job.status_updates
    assert [u.message for u in job.status_updates][-1] == "Job is Complete"
    with together_emulator.client() as c:
        answer = c.chat(up.model_name, [{"role": "user", "content": "hi"}], max_tokens=8)
    assert answer.model == "devuser/lora" and answer.text


def failure_message(job) -> str:
    assert job.status == JobStatus.FAILED, job.status_updates
    return job.status_updates[-1].message


def test_nested_folder_fails(together_emulator, s3_bucket, adapter_dir, tmp_path) -> None:
    url = upload_archive(s3_bucket, zip_folder(adapter_dir, tmp_path / "n.zip", inside="my-lora/"))
    _, job, _ = run_job(together_emulator, url)
    assert "inside 'my-lora/'" in failure_message(job)


def test_missing_safetensors_fails(together_emulator, s3_bucket, adapter_dir, tmp_path) -> None:
    (adapter_dir / "adapter_model.safetensors").rename(adapter_dir / "adapter_model.bin")
    url = upload_archive(s3_bucket, zip_folder(adapter_dir, tmp_path / "m.zip"))
    _, job, _ = run_job(together_emulator, url)
    assert "adapter_model.safetensors" in failure_message(job)


def test_not_an_archive_fails(together_emulator, s3_bucket, tmp_path) -> None:
    raw = tmp_path / "adapter.safetensors"
    raw.write_bytes(b"\x08" + b"\x00" * 100)
    _, job, _ = run_job(together_emulator, upload_archive(s3_bucket, raw))
    assert ".zip or .tar.gz" in failure_message(job)


def test_short_lived_and_expired_urls_fail(
    together_emulator, s3_bucket, adapter_dir, tmp_path
) -> None:
    archive = zip_folder(adapter_dir, tmp_path / "s.zip")
    _, job, _ = run_job(together_emulator, upload_archive(s3_bucket, archive, expires=3600))
    assert "at least 100 minutes" in failure_message(job)
    together_emulator.admin.configure(min_url_lifetime_s=0)
    url = upload_archive(s3_bucket, archive, key="e.zip", expires=1)
    import time

    time.sleep(1.5)
    _, job, _ = run_job(together_emulator, url, name="lora-expired")
    assert "expired" in failure_message(job)


def test_unsupported_base_model_fails(together_emulator, s3_bucket, adapter_dir, tmp_path) -> None:
    together_emulator.admin.configure(base_models="C")
    url = upload_archive(s3_bucket, zip_folder(adapter_dir, tmp_path / "u.zip"))
    _, job, _ = run_job(together_emulator, url)
    assert "is not supported for LoRA adapters" in failure_message(job)


def test_empty_adapter_fails(together_emulator, s3_bucket, tmp_path) -> None:
    folder = write_adapter(tmp_path / "empty", BASE_8B, tensors={})
    url = upload_archive(s3_bucket, zip_folder(folder, tmp_path / "e.zip"))
    _, job, _ = run_job(together_emulator, url)
    assert "no tensors" in failure_message(job)


def test_hub_repo_completes(together_emulator, local_hub, adapter_dir) -> None:
    repo = local_hub.repo("acme/support-lora")
    for f in adapter_dir.iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    _, job, up = run_job(
        together_emulator,
        f"{local_hub.endpoint}/acme/support-lora".replace(
            local_hub.endpoint, "https://huggingface.co"
        ),
    )
    assert job.status == JobStatus.COMPLETE, job.status_updates
    assert up.model_source == "huggingface"


@pytest.mark.local_hub(private={"acme/private-lora": "hf_localtesttoken"})
def test_private_hub_repo_needs_token(together_emulator, local_hub, adapter_dir) -> None:
    repo = local_hub.repo("acme/private-lora")
    for f in adapter_dir.iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    _, job, _ = run_job(together_emulator, "acme/private-lora")
    assert "private" in failure_message(job)
    _, job, _ = run_job(
        together_emulator, "acme/private-lora", name="with-token", hf_token="hf_localtesttoken"
    )
    assert job.status == JobStatus.COMPLETE, job.status_updates


def test_hub_repo_with_adapter_in_subfolder_fails(
    together_emulator, local_hub, adapter_dir
) -> None:
    repo = local_hub.repo("acme/ckpt-lora") / "checkpoint-500"
    repo.mkdir()
    for f in adapter_dir.iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    _, job, _ = run_job(together_emulator, "acme/ckpt-lora")
    assert "checkpoint-500" in failure_message(job)


@pytest.mark.reliability("emulator restart: state kept")
def test_state_survives_a_restart(tmp_path: Path) -> None:
    from prefect_together_lora.client import TogetherClient
    from prefect_together_lora.testing.emulator import run_emulator

    state = str(tmp_path / "state.db")
    with (
        run_emulator(state=state, job_seconds=0, hf_endpoint="http://127.0.0.1:9") as url,
        TogetherClient("k", url) as c,
    ):
        up = c.upload_adapter("kept", "acme/x", BASE_8B)
        wait_job(c, up.job_id)
    with run_emulator(state=state, job_seconds=0) as url, TogetherClient("k", url) as c:
        assert [j.job_id for j in c.list_jobs()] == [up.job_id]
        assert json.loads(c.get_job(up.job_id).model_dump_json())["status"] == "Failed"
