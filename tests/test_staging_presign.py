"""Staging (content-addressed, deterministic, no re-upload) and presigning (SigV4, Together's
100-minute rule, temporary credentials)."""

from __future__ import annotations

import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import botocore.session
import httpx
import pytest
from botocore.credentials import RefreshableCredentials

from prefect_together_lora.errors import PresignError, SourceError
from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.s3 import make_s3_client, presign_get, url_lifetime_s
from prefect_together_lora.staging import stage_source
from prefect_together_lora.testing.adapters import write_adapter
from tests.helpers import BASE_8B


def test_folder_staging_is_deterministic_and_skips_junk(s3_bucket, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", BASE_8B)
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._adapter_config.json").write_bytes(b"junk")
    source = AdapterSource.parse(str(folder))
    first = stage_source(source, f"s3://{s3_bucket.bucket}/stage")
    assert first.uploaded and first.key == f"stage/{first.sha256}.zip"
    again = stage_source(source, f"s3://{s3_bucket.bucket}/stage")
    assert not again.uploaded and again.key == first.key  # existing key: not uploaded again
    body = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=first.key)["Body"].read()
    (tmp_path / "s.zip").write_bytes(body)
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert sorted(zf.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
        assert zf.getinfo("adapter_model.safetensors").compress_type == zipfile.ZIP_STORED


def test_s3_folder_and_local_archive_staging(s3_bucket, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", BASE_8B)
    for f in folder.iterdir():
        s3_bucket.client.put_object(
            Bucket=s3_bucket.bucket, Key=f"runs/1/{f.name}", Body=f.read_bytes()
        )
    from_s3 = stage_source(
        AdapterSource.parse(f"s3://{s3_bucket.bucket}/runs/1/"), f"s3://{s3_bucket.bucket}/stage"
    )
    from_disk = stage_source(AdapterSource.parse(str(folder)), f"s3://{s3_bucket.bucket}/stage")
    assert from_s3.sha256 == from_disk.sha256  # same files, same archive, same key
    (tmp_path / "x.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    archive = stage_source(
        AdapterSource.parse(str(tmp_path / "x.tar.gz")), f"s3://{s3_bucket.bucket}/stage"
    )
    assert archive.key.endswith(".tar.gz")


def test_staging_needs_a_location(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TOGETHER_LORA_STAGING_URI", raising=False)
    with pytest.raises(SourceError, match="TOGETHER_LORA_STAGING_URI"):
        stage_source(AdapterSource.parse(str(write_adapter(tmp_path / "a"))))
    with pytest.raises(SourceError, match="s3://bucket/prefix"):
        stage_source(AdapterSource.parse(str(tmp_path / "a")), "/local/dir")


def test_presign_is_sigv4_and_works_with_get_but_not_head(s3_bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key="k.zip", Body=b"0123456789")
    signed = presign_get(s3_bucket.bucket, "k.zip", client=make_s3_client())
    url = signed.url.get_secret_value()
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=21600" in url
    assert 21590 < url_lifetime_s(url) <= 21600
    assert httpx.get(url, headers={"Range": "bytes=0-3"}).content == b"0123"
    assert httpx.head(url).status_code == 403  # as on real S3: the method is signed
    assert "Signature" not in repr(signed) and "Signature" not in signed.model_dump_json()
    assert signed.expires_at > datetime.now(timezone.utc) + timedelta(hours=5)


@pytest.mark.parametrize(("expires", "message"), [(3600, "too short"), (8 * 86400, "7 days")])
def test_presign_refuses_lifetimes_together_would_reject(s3_bucket, expires, message) -> None:
    with pytest.raises(PresignError, match=message):
        presign_get(s3_bucket.bucket, "k.zip", expires_s=expires, client=make_s3_client())


def test_temporary_credentials_expiring_before_the_url_warn(local_s3) -> None:
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    creds = RefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": "testing-access-key",
            "secret_key": "testing-secret-key",
            "token": "session-token",
            "expiry_time": expiry,
        },
        refresh_using=lambda: {},
        method="sts-assume-role",
    )
    core = botocore.session.Session()
    core._credentials = creds
    session = boto3.Session(botocore_session=core, region_name="us-east-1")
    client = make_s3_client(session, endpoint_url=local_s3.endpoint)
    signed = presign_get("b-any", "k.zip", client=client)
    assert signed.warnings and "expire at" in signed.warnings[0]
    static = boto3.Session(
        aws_access_key_id="a",
        aws_secret_access_key="b",
        aws_session_token="t",
        region_name="us-east-1",
    )
    assert (
        "session token"
        in presign_get(
            "b-any", "k", client=make_s3_client(static, endpoint_url=local_s3.endpoint)
        ).warnings[0]
    )


def test_staging_reports_upload_progress(s3_bucket, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "big", BASE_8B, layers=range(8), rank=16)
    seen: list[tuple[int, int]] = []
    staged = stage_source(
        AdapterSource.parse(str(folder)),
        f"s3://{s3_bucket.bucket}/stage",
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert staged.uploaded and seen and seen[-1] == (staged.size, staged.size)
    assert len(seen) <= 10 and [s for s, _ in seen] == sorted(s for s, _ in seen)
    seen.clear()  # the same content again: nothing is sent, nothing reported
    again = stage_source(
        AdapterSource.parse(str(folder)),
        f"s3://{s3_bucket.bucket}/stage",
        progress=lambda sent, total: seen.append((sent, total)),
    )
    assert not again.uploaded and seen == []
