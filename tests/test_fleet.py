"""The fleet scan on a Prefect test server: finds archives and folders under a prefix (or a
Hub author's repos), skips what Together already has, publishes the rest concurrently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_together_lora.fleet import discover, find_sources, model_name_for
from prefect_together_lora.flows import publish_new_adapters
from prefect_together_lora.options import JobOptions, SmokeOptions
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from prefect_together_lora.together.backend import ServingOptions
from tests.helpers import BASE_8B, put_file, read_artifacts

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)


def stock_prefix(s3_bucket, tmp_path: Path) -> None:
    a = write_adapter(tmp_path / "a", BASE_8B, seed=1)
    b = write_adapter(tmp_path / "b", BASE_8B, seed=2)
    c = write_adapter(tmp_path / "c", BASE_8B, seed=3)
    put_file(
        s3_bucket.client, s3_bucket.bucket, "adapters/run-1.zip", zip_folder(a, tmp_path / "a.zip")
    )
    put_file(
        s3_bucket.client,
        s3_bucket.bucket,
        "adapters/run-2.tar.gz",
        tar_folder(b, tmp_path / "b.tar.gz"),
    )
    for f in c.iterdir():
        put_file(s3_bucket.client, s3_bucket.bucket, f"adapters/run-3/{f.name}", f)
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key="adapters/README.md", Body=b"x")


def test_find_sources_under_a_prefix(s3_bucket, tmp_path: Path) -> None:
    stock_prefix(s3_bucket, tmp_path)
    found = find_sources(f"s3://{s3_bucket.bucket}/adapters/")
    assert found == [
        (f"s3://{s3_bucket.bucket}/adapters/run-1.zip", "run-1"),
        (f"s3://{s3_bucket.bucket}/adapters/run-2.tar.gz", "run-2"),
        (f"s3://{s3_bucket.bucket}/adapters/run-3/", "run-3"),
    ]
    candidates = discover(f"s3://{s3_bucket.bucket}/adapters/", "team")
    assert len({c.model_name for c in candidates}) == 3
    assert candidates[0].model_name == model_name_for("team", "run-1", candidates[0].fingerprint)


def test_find_sources_of_a_hub_author(local_hub, tmp_path: Path) -> None:
    for name in ("lora-a", "lora-b"):
        write_adapter(local_hub.repo(f"acme/{name}"), BASE_8B)
    write_adapter(local_hub.repo("other/lora-c"), BASE_8B)
    found = find_sources("hf://acme", hf_endpoint=local_hub.endpoint)
    assert found == [("hf://acme/lora-a", "lora-a"), ("hf://acme/lora-b", "lora-b")]


@pytest.mark.together_emulator(job_seconds=0.3)
def test_fleet_publishes_new_and_skips_published(
    prefect_harness, together_emulator, s3_bucket, tmp_path: Path
) -> None:
    stock_prefix(s3_bucket, tmp_path)
    location = f"s3://{s3_bucket.bucket}/adapters/"
    first = discover(location, "team")[0]
    with together_emulator.client() as client:  # run-1 was published before
        earlier = client.upload_adapter(first.model_name, "acme/earlier", BASE_8B)
    together_emulator.admin.set_job_status(earlier.job_id, "Complete", "Job is Complete")
    state = publish_new_adapters(
        location=location,
        base_model=BASE_8B,
        name_prefix="team",
        credentials=together_emulator.credentials(),
        api="v1",
        staging_uri=f"s3://{s3_bucket.bucket}/stg",
        job=JobOptions(poll_initial_s=0.05, poll_max_s=0.2),
        smoke=SmokeOptions(prompts=["hi"], retry_interval_s=0.05),
        return_state=True,
    )
    assert state.is_completed(), state.message
    entries = {
        e.source.rsplit("/", 2)[-2] if e.source.endswith("/") else e.source.rsplit("/", 1)[-1]: e
        for e in state.result()
    }
    assert entries["run-1.zip"].action == "skipped"
    assert entries["run-1.zip"].reason.startswith("already published")
    assert entries["run-2.tar.gz"].action == "published"
    assert entries["run-3"].action == "published"
    uploads = together_emulator.admin.requests(method="POST", path="/v1/models")
    assert len(uploads) == 3  # the earlier one plus two new

    again = publish_new_adapters(
        location=location,
        base_model=BASE_8B,
        name_prefix="team",
        credentials=together_emulator.credentials(),
        api="v1",
        staging_uri=f"s3://{s3_bucket.bucket}/stg",
        return_state=True,
    )
    assert {e.action for e in again.result()} == {"skipped"}
    assert len(together_emulator.admin.requests(method="POST", path="/v1/models")) == 3
    table = next(
        a.data for k, a in read_artifacts(again).items() if k.startswith("together-lora-fleet-")
    )
    assert len(json.loads(table)) == 3


def test_mixed_bases_and_a_bad_adapter_do_not_fail_every_scan(
    prefect_harness, together_emulator, s3_bucket, tmp_path: Path
) -> None:
    """Each adapter is published on the base its config records; an invalid one is reported
    (rejected, with an event) and skipped by later scans until its content changes."""
    qwen = "Qwen/Qwen2.5-14B-Instruct"
    for key, base, extra in (
        ("mixed/llama.zip", BASE_8B, {}),
        ("mixed/qwen.zip", qwen, {}),
        ("mixed/broken.zip", BASE_8B, {"rank": 512}),  # over every limit: invalid
    ):
        folder = write_adapter(tmp_path / key.replace("/", "-"), base, **extra)
        archive = zip_folder(folder, tmp_path / f"{key.replace('/', '-')}.zip")
        put_file(s3_bucket.client, s3_bucket.bucket, key, archive)
    location = f"s3://{s3_bucket.bucket}/mixed/"
    candidates = {c.label: c for c in discover(location, "mix")}
    assert candidates["qwen"].recorded_base == qwen
    assert candidates["llama"].recorded_base == BASE_8B

    def scan():
        state = publish_new_adapters(
            location=location,
            name_prefix="mix",
            credentials=together_emulator.credentials(),
            staging_uri=f"s3://{s3_bucket.bucket}/stg",
            job=JobOptions(poll_initial_s=0.05, poll_max_s=0.2),
            smoke=SmokeOptions(prompts=["hi"], retry_interval_s=0.05),
            serving=ServingOptions(mode="none"),
            return_state=True,
        )
        assert state.is_completed(), state.message  # a bad adapter does not fail the scan
        return {e.source.rsplit("/", 1)[-1]: e for e in state.result()}

    first = scan()
    assert first["llama.zip"].action == "published" and first["llama.zip"].base_model == BASE_8B
    assert first["qwen.zip"].action == "published" and first["qwen.zip"].base_model == qwen
    assert (
        first["broken.zip"].action == "rejected" and "RANK_TOO_HIGH" in first["broken.zip"].reason
    )
    again = scan()
    assert {k: e.action for k, e in again.items()} == {
        "llama.zip": "skipped",
        "qwen.zip": "skipped",
        "broken.zip": "skipped",
    }
    assert again["broken.zip"].reason.startswith("rejected earlier, content unchanged")
    with together_emulator.v2_client() as client:
        bases = {m.name.rsplit("-", 1)[0]: m.base_model_id for m in client.list_models()}
    assert len(set(bases.values())) == 2  # two records, two different bases
