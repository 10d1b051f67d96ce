"""Validation over every source kind — disk, presigned URL (strict local S3), local Hub, S3
folder — in every archive format, for every catalog model; plus the source-level rules."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.resolve import ResolvedSource
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from prefect_together_lora.validation.validator import validate_resolved, validate_source
from tests.adapter_cases import L8, Case, codes, valid_cases
from tests.helpers import put_file, raw_presign

ARCHIVES: dict[str, Callable[[Path, Path], Path]] = {
    "zip": lambda f, d: zip_folder(f, d / "a.zip"),
    "zip-stored": lambda f, d: zip_folder(f, d / "a.zip", compress=False),
    "tar": lambda f, d: tar_folder(f, d / "a.tar", gzip=False),
    "tar.gz": lambda f, d: tar_folder(f, d / "a.tar.gz"),
}
TRANSPORTS = [
    "folder",
    *[f"disk-{a}" for a in ARCHIVES],
    *[f"url-{a}" for a in ARCHIVES],
    "hub",
    "s3-folder",
]


@pytest.fixture
def serve(s3_bucket, local_hub, tmp_path: Path):
    """Turn an adapter folder into a source string for a transport."""
    counter = iter(range(10_000))

    def to_source(folder: Path, transport: str) -> str:
        n = next(counter)
        work = tmp_path / f"t{n}"
        work.mkdir()
        if transport == "folder":
            return str(folder)
        if transport.startswith("disk-"):
            return str(ARCHIVES[transport[5:]](folder, work))
        if transport.startswith("url-"):
            archive = ARCHIVES[transport[4:]](folder, work)
            key = f"{n}/{archive.name}"
            put_file(s3_bucket.client, s3_bucket.bucket, key, archive)
            return raw_presign(s3_bucket.client, s3_bucket.bucket, key)
        if transport == "hub":
            repo = local_hub.repo(f"acme/lora-{n}")
            for item in folder.rglob("*"):
                if item.is_file():
                    target = repo / item.relative_to(folder)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(item.read_bytes())
            return f"hf://acme/lora-{n}"
        assert transport == "s3-folder"
        for item in folder.rglob("*"):
            if item.is_file():
                put_file(
                    s3_bucket.client,
                    s3_bucket.bucket,
                    f"dirs/{n}/{item.relative_to(folder).as_posix()}",
                    item,
                )
        return f"s3://{s3_bucket.bucket}/dirs/{n}/"

    return to_source


def check(source: str, case_base: str, local_hub) -> object:
    return validate_source(source, case_base, hf_endpoint=local_hub.endpoint)


@pytest.mark.parametrize("case", valid_cases(), ids=lambda c: c.name)
def test_every_model_valid_over_every_transport(
    case: Case, serve, local_hub, tmp_path: Path
) -> None:
    folder = case.build(tmp_path / "adapter")
    for transport in TRANSPORTS:
        report = check(serve(folder, transport), case.base, local_hub)
        assert report.valid, (transport, report.findings)
        assert report.adapter.rank == 8 and report.adapter.layers == 2, transport
        if transport.startswith("url-zip") or transport == "hub":
            assert report.requests <= 4, (transport, report.requests)
            assert report.bytes_read <= 256 * 1024, (transport, report.bytes_read)
        if transport.startswith("url-"):
            assert "?" not in report.source


NESTED = ["folder", "disk-zip", "disk-tar.gz", "url-zip", "url-tar", "url-tar.gz"]


@pytest.mark.parametrize("transport", [*NESTED, "hub"])
def test_nested_adapter_is_named(transport: str, serve, local_hub, tmp_path: Path) -> None:
    inner = write_adapter(tmp_path / "outer" / "checkpoint-500", L8)
    report = check(serve(inner.parent, transport), L8, local_hub)
    expected = "HF_ADAPTER_NOT_AT_ROOT" if transport == "hub" else "ARCHIVE_NESTED"
    if transport == "folder":
        expected = "ARCHIVE_NESTED"
    found = next(f for f in report.findings if f.code == expected)
    assert "checkpoint-500" in found.message and not report.valid


@pytest.mark.parametrize(
    "transport",
    [
        "url-zip",
        "url-zip-stored",
        "url-tar",
        "url-tar.gz",
        "hub",
        "s3-folder",
        "disk-zip",
        "disk-tar.gz",
    ],
)
def test_truncated_weights_and_missing_files_over_transports(
    transport: str, serve, local_hub, tmp_path: Path
) -> None:
    folder = write_adapter(tmp_path / "a", L8)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4096])
    assert "SAFETENSORS_CORRUPT" in codes(check(serve(folder, transport), L8, local_hub), "error")
    weights.unlink()
    assert "MISSING_SAFETENSORS" in codes(check(serve(folder, transport), L8, local_hub), "error")


def test_shape_mismatch_from_the_hub(serve, local_hub, tmp_path: Path) -> None:
    from tests.adapter_cases import Q72, model_adapter

    folder = model_adapter(Q72)(tmp_path / "a")
    report = check(serve(folder, "hub"), L8, local_hub)
    assert "SHAPE_MISMATCH" in codes(report, "error")
    assert report.fingerprint.startswith("hf:acme/")


def _zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "duplicate", "encrypted", "bzip2"])
def test_unsafe_zip_entries(kind: str, s3_bucket, local_hub, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", L8)
    entries: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        (f.name, f.read_bytes()) for f in folder.iterdir()
    ]
    if kind == "dotdot":
        entries.append(("../evil.sh", b"#!/bin/sh"))
    elif kind == "absolute":
        entries.append(("/etc/cron.d/evil", b"x"))
    elif kind == "duplicate":
        entries.append(("adapter_config.json", b"{}"))
    elif kind == "encrypted":
        entries.append(("notes.txt", b"x"))
    else:
        info = zipfile.ZipInfo("notes.txt")
        info.compress_type = zipfile.ZIP_BZIP2
        entries.append((info, b"x" * 100))
    with pytest.warns(UserWarning) if kind == "duplicate" else _nothing():
        archive = _zip_with(tmp_path / "u.zip", entries)
    if kind == "encrypted":  # zipfile clears flag bits on write: set "encrypted" afterwards
        data = bytearray(archive.read_bytes())
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (at := data.find(signature, start)) >= 0:
                name_len = int.from_bytes(data[at + (26 if flag_at == 6 else 28) :][:2], "little")
                name_at = at + (30 if flag_at == 6 else 46)
                if bytes(data[name_at : name_at + name_len]) == b"notes.txt":
                    data[at + flag_at] |= 0x1
                start = at + 4
        archive.write_bytes(bytes(data))
    put_file(s3_bucket.client, s3_bucket.bucket, "u.zip", archive)
    report = check(raw_presign(s3_bucket.client, s3_bucket.bucket, "u.zip"), L8, local_hub)
    assert "ARCHIVE_UNSAFE_ENTRY" in codes(report, "error"), report.findings


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_archive_format_mismatch(s3_bucket, local_hub, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", L8)
    gz = tar_folder(folder, tmp_path / "a.tar.gz")
    put_file(s3_bucket.client, s3_bucket.bucket, "lies.zip", gz)
    report = check(raw_presign(s3_bucket.client, s3_bucket.bucket, "lies.zip"), L8, local_hub)
    archive = next(f for f in report.findings if f.code == "ARCHIVE_FORMAT")
    assert "detected: tar.gz" in archive.message
    put_file(s3_bucket.client, s3_bucket.bucket, "raw.zip", folder / "adapter_model.safetensors")
    report = check(raw_presign(s3_bucket.client, s3_bucket.bucket, "raw.zip"), L8, local_hub)
    assert "raw safetensors file" in next(
        f.message for f in report.findings if f.code == "ARCHIVE_FORMAT"
    )


def test_url_rules(s3_bucket, local_hub, tmp_path: Path) -> None:
    archive = zip_folder(write_adapter(tmp_path / "a", L8), tmp_path / "a.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, "a.zip", archive)
    short = raw_presign(s3_bucket.client, s3_bucket.bucket, "a.zip", expires=3600)
    assert "S3_URL_EXPIRES_SOON" in codes(check(short, L8, local_hub), "error")
    expired = raw_presign(s3_bucket.client, s3_bucket.bucket, "a.zip", expires=1)
    time.sleep(1.5)
    report = validate_resolved(
        ResolvedSource(
            source=AdapterSource.parse(expired),
            fingerprint="x",
            url=AdapterSource.parse(expired).url,
        ),
        L8,
        options=__import__(
            "prefect_together_lora.validation.rules", fromlist=["x"]
        ).ValidationOptions(min_url_lifetime_s=-(10**9)),
    )
    unreachable = next(f for f in report.findings if f.code == "S3_UNREACHABLE")
    assert "403" in unreachable.message and "expired" in unreachable.message
    assert "Signature" not in unreachable.message
    unsigned = f"{s3_bucket.endpoint}/{s3_bucket.bucket}/a.zip?versionId=null"
    report = validate_resolved(
        ResolvedSource(
            source=AdapterSource.parse(unsigned),
            fingerprint="x",
            url=AdapterSource.parse(unsigned).url,
        ),
        L8,
    )
    assert "S3_NOT_PRESIGNED" in codes(report, "error")


@pytest.mark.local_hub(
    private={"acme/private": "hf_localtoken123456"}, gated={"acme/gated": "hf_localtoken123456"}
)
@pytest.mark.parametrize("repo", ["acme/private", "acme/gated", "acme/missing"])
def test_hub_access(repo: str, local_hub, tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", L8)
    if repo != "acme/missing":
        target = local_hub.repo(repo)
        for f in folder.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
    report = validate_source(f"hf://{repo}", L8, hf_endpoint=local_hub.endpoint)
    finding = next(f for f in report.findings if f.code == "HF_REPO_INACCESSIBLE")
    assert ("Gated" in finding.message) == (repo == "acme/gated")
    if repo != "acme/missing":
        ok = validate_source(
            f"hf://{repo}", L8, hf_endpoint=local_hub.endpoint, hf_token="hf_localtoken123456"
        )
        assert ok.valid, ok.findings
