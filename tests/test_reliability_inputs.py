"""Reliability suite, hostile input: archives, headers, configs and URLs someone else made.

Every case goes through the public entry point (``validate_source``) from a local file, a
presigned URL and an ``s3://`` URI on the local S3 server, and headers/configs also from a local
Hub repo. Each must end in its coded finding (or, for a source that cannot be read, an
unreadable-class finding: exit 2) within 15 s and under 500 MB of Python allocations, never a
crash and never VALID.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import stat
import struct
import tarfile
import threading
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.local import folder_fingerprint
from prefect_together_lora.staging import stage_source
from prefect_together_lora.testing.adapters import write_adapter, zip_bytes
from prefect_together_lora.validation.rules import ALL_CODES, UNREADABLE_CODES, ValidationOptions
from prefect_together_lora.validation.validator import validate_source
from tests.adapter_cases import L8
from tests.helpers import put_file, raw_presign

pytestmark = pytest.mark.reliability

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
MAX_SECONDS = 15.0
MAX_PEAK_BYTES = 500 * 1024 * 1024
OPTIONS = ValidationOptions(read_deadline_s=5.0)


# --- a valid adapter, and the hostile things made from it -------------------------------------


@functools.lru_cache(maxsize=1)
def good() -> dict[str, bytes]:
    import tempfile

    folder = write_adapter(Path(tempfile.mkdtemp()) / "good", L8, modules=("q_proj",), seed=7)
    return {CONFIG: (folder / CONFIG).read_bytes(), WEIGHTS: (folder / WEIGHTS).read_bytes()}


def good_zip() -> bytes:
    return zip_bytes(good())


def tar_bytes(members: list[tarfile.TarInfo], data: dict[str, bytes], gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> list[tarfile.TarInfo]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    weights = tarfile.TarInfo(WEIGHTS)
    return [info, weights]


def tar_with(kind: bytes) -> bytes:
    return tar_bytes(_link(CONFIG, kind), {WEIGHTS: good()[WEIGHTS]})


def zip_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo(CONFIG)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/home/user/.aws/credentials")
        zf.writestr(WEIGHTS, good()[WEIGHTS])
    return buffer.getvalue()


def zip_named(names: dict[str, str]) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, source in names.items():
                zf.writestr(name.split("#")[0], good()[source])
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def many_entries() -> bytes:
    """150,000 real entries: the central directory alone would cost zipfile ~100 MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in good().items():
            zf.writestr(name, data)
        empty = zipfile.ZipInfo("logs/0")
        for i in range(150_000):
            empty.filename = f"l/{i}"
            zf.writestr(zipfile.ZipInfo(f"l/{i}"), b"")
    return buffer.getvalue()


def deflate_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(CONFIG, "w") as fh:
            chunk = b" " * (1 << 20)
            for _ in range(200):
                fh.write(chunk)
        zf.writestr(WEIGHTS, good()[WEIGHTS])
    return buffer.getvalue()


def zip_of_zips() -> bytes:
    inner = good_zip()
    for _ in range(3):
        inner = zip_bytes({"adapter.zip": inner})
    return inner


def _end_record(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


def broken_zip64() -> bytes:
    """An end record that defers to a zip64 record, whose locator points at garbage."""
    data = bytearray(good_zip())
    at = _end_record(bytes(data))
    data[at + 10 : at + 12] = b"\xff\xff"  # total entries: "see the zip64 record"
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 12, 1)
    return bytes(data[:at]) + locator + bytes(data[at:])


def missing_central_directory() -> bytes:
    data = bytearray(good_zip())
    at = _end_record(bytes(data))
    struct.pack_into("<L", data, at + 16, len(data) - 30)  # directory offset: nowhere
    return bytes(data)


def encrypted_entry() -> bytes:
    data = bytearray(good_zip())
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        data[at + 8] |= 0x1  # the central directory's "encrypted" flag
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def tar_extended_header(kind: bytes, claimed: int) -> bytes:
    """A 2 MB-or-less .tar.gz whose pax / GNU long-name header claims ``claimed`` bytes."""
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type = kind
    info.size = claimed
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = compressor.compress(header)
    body += compressor.compress(b"a" * (1 << 20)) + compressor.flush()
    return body


@functools.lru_cache(maxsize=1)
def huge_member_first() -> bytes:
    """A real 1 GiB optimizer.pt (zeros: 1 MB compressed) ahead of the adapter files."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = []
    info = tarfile.TarInfo("optimizer.pt")
    info.size = 1 << 30
    parts.append(compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
    zeros = bytes(1 << 22)
    for _ in range(info.size // len(zeros)):
        parts.append(compressor.compress(zeros))
    rest = tar_bytes([tarfile.TarInfo(CONFIG), tarfile.TarInfo(WEIGHTS)], good(), gz=False)
    parts.append(compressor.compress(rest))
    parts.append(compressor.flush())
    return b"".join(parts)


def truncated_tar_gz() -> bytes:
    whole = tar_bytes([tarfile.TarInfo(CONFIG), tarfile.TarInfo(WEIGHTS)], good())
    return whole[: len(whole) - 64]


ARCHIVES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zip-deflate-bomb-config": ("zip", deflate_bomb, "CONFIG_INVALID_JSON"),
    "zip-nested-zips": ("zip", zip_of_zips, "MISSING_ADAPTER_CONFIG"),
    "zip-150k-entries": ("zip", many_entries, "ARCHIVE_CORRUPT"),
    "zip-traversal-name": (
        "zip",
        lambda: zip_named({f"../{CONFIG}": CONFIG, WEIGHTS: WEIGHTS}),
        "ARCHIVE_UNSAFE_ENTRY",
    ),
    "zip-absolute-name": (
        "zip",
        lambda: zip_named({f"/{CONFIG}": CONFIG, WEIGHTS: WEIGHTS}),
        "ARCHIVE_UNSAFE_ENTRY",
    ),
    "zip-duplicate-names": (
        "zip",
        lambda: zip_named({CONFIG: CONFIG, f"{CONFIG}#2": CONFIG, WEIGHTS: WEIGHTS}),
        "ARCHIVE_UNSAFE_ENTRY",
    ),
    "zip-symlink-config": ("zip", zip_symlink, "ARCHIVE_UNSAFE_ENTRY"),
    "zip-encrypted-entry": ("zip", encrypted_entry, "ARCHIVE_UNSAFE_ENTRY"),
    "zip64-broken-end-record": ("zip", broken_zip64, "ARCHIVE_CORRUPT"),
    "zip-truncated-no-end-record": (
        "zip",
        lambda: good_zip()[: len(good_zip()) * 6 // 10],
        "ARCHIVE_CORRUPT",
    ),
    "zip-missing-central-directory": ("zip", missing_central_directory, "ARCHIVE_CORRUPT"),
    "zip-that-is-a-png": ("zip", lambda: b"\x89PNG\r\n\x1a\n" + bytes(600), "ARCHIVE_FORMAT"),
    "tar-symlink-config": ("tar.gz", lambda: tar_with(tarfile.SYMTYPE), "ARCHIVE_UNSAFE_ENTRY"),
    "tar-hardlink-config": ("tar.gz", lambda: tar_with(tarfile.LNKTYPE), "ARCHIVE_UNSAFE_ENTRY"),
    "tar-device-config": ("tar.gz", lambda: tar_with(tarfile.CHRTYPE), "ARCHIVE_UNSAFE_ENTRY"),
    "tar-fifo-config": ("tar.gz", lambda: tar_with(tarfile.FIFOTYPE), "ARCHIVE_UNSAFE_ENTRY"),
    "tar-traversal-name": (
        "tar",
        lambda: tar_bytes(
            [tarfile.TarInfo(f"../../{CONFIG}"), tarfile.TarInfo(WEIGHTS)],
            {f"../../{CONFIG}": good()[CONFIG], WEIGHTS: good()[WEIGHTS]},
            gz=False,
        ),
        "ARCHIVE_UNSAFE_ENTRY",
    ),
    "tar.gz-pax-header-claims-2GiB": (
        "tar.gz",
        lambda: tar_extended_header(tarfile.XHDTYPE, 2 << 30),
        "ARCHIVE_CORRUPT",
    ),
    "tar.gz-gnu-longname-claims-2GiB": (
        "tar.gz",
        lambda: tar_extended_header(tarfile.GNUTYPE_LONGNAME, 2 << 30),
        "ARCHIVE_CORRUPT",
    ),
    "tar.gz-1GiB-member-before-adapter": ("tar.gz", huge_member_first, "ARCHIVE_UNCHECKABLE"),
    "tar.gz-truncated": ("tar.gz", truncated_tar_gz, "ARCHIVE_TRUNCATED"),
}


def with_weights(weights: bytes) -> dict[str, bytes]:
    return {CONFIG: good()[CONFIG], WEIGHTS: weights}


def with_config(**changes: Any) -> dict[str, bytes]:
    config = json.loads(good()[CONFIG])
    config.update(changes)
    return {CONFIG: json.dumps(config).encode(), WEIGHTS: good()[WEIGHTS]}


def raw_config(text: bytes) -> dict[str, bytes]:
    return {CONFIG: text, WEIGHTS: good()[WEIGHTS]}


def header(document: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(document)) + document + data


def tensor_doc(**entry: Any) -> bytes:
    base = {"dtype": "BF16", "shape": [8, 4096], "data_offsets": [0, 65536]}
    base.update(entry)
    return json.dumps({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": base})


def empty_objects() -> bytes:
    """A 25 MB header of 8M empty objects (730 MB of dicts if parsed naively)."""
    body = b'{"x":[' + b",".join([b"{}"] * 8_000_000) + b"]}"
    return header(body)


FILES: dict[str, tuple[Callable[[], dict[str, bytes]], str]] = {
    "header-length-past-file": (
        lambda: with_weights(struct.pack("<Q", 10_000) + b"{}"),
        "SAFETENSORS_CORRUPT",
    ),
    "header-length-2**63": (
        lambda: with_weights(struct.pack("<Q", 2**63) + b"{}"),
        "SAFETENSORS_CORRUPT",
    ),
    "header-not-json": (lambda: with_weights(header(b"{not json at all}")), "SAFETENSORS_CORRUPT"),
    "header-not-utf8": (lambda: with_weights(header(b'{"\xff\xfe": 1}')), "SAFETENSORS_CORRUPT"),
    "header-nested-100k-deep": (
        lambda: with_weights(header(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        "SAFETENSORS_CORRUPT",
    ),
    "header-duplicate-keys": (
        lambda: with_weights(
            header(
                b'{"t":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},'
                b'"t":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}',
                bytes(8),
            )
        ),
        "SAFETENSORS_CORRUPT",
    ),
    "header-overlapping-offsets": (
        lambda: with_weights(
            header(
                b'{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},'
                b'"b":{"dtype":"BF16","shape":[2],"data_offsets":[2,6]}}',
                bytes(6),
            )
        ),
        "SAFETENSORS_CORRUPT",
    ),
    "header-offsets-past-end": (
        lambda: with_weights(header(tensor_doc().encode(), bytes(16))),
        "SAFETENSORS_CORRUPT",
    ),
    "header-overflowing-shape": (
        lambda: with_weights(header(tensor_doc(shape=[2**40, 2**40, 2**40]).encode())),
        "SAFETENSORS_CORRUPT",
    ),
    "header-unknown-dtype": (
        lambda: with_weights(header(tensor_doc(dtype="F128").encode())),
        "SAFETENSORS_CORRUPT",
    ),
    "header-list-dtype": (
        lambda: with_weights(header(tensor_doc(dtype=["BF16"]).encode())),
        "SAFETENSORS_CORRUPT",
    ),
    "header-8M-empty-objects": (lambda: with_weights(empty_objects()), "SAFETENSORS_CORRUPT"),
    "header-lone-surrogate-name": (
        lambda: with_weights(
            header(
                b'{"base_model.model.\\ud800":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}',
                bytes(4),
            )
        ),
        "SAFETENSORS_CORRUPT",
    ),
    "config-r-NaN": (
        lambda: raw_config(good()[CONFIG].replace(b'"r": 8', b'"r": NaN')),
        "RANK_INVALID",
    ),
    "config-r-string": (lambda: with_config(r="16"), "RANK_INVALID"),
    "config-r-negative": (lambda: with_config(r=-8), "RANK_INVALID"),
    "config-r-zero": (lambda: with_config(r=0), "RANK_INVALID"),
    "config-alpha-NaN": (
        lambda: raw_config(good()[CONFIG].replace(b'"lora_alpha": 16', b'"lora_alpha": NaN')),
        "CONFIG_VALUE_INVALID",
    ),
    "config-alpha-Infinity": (
        lambda: raw_config(good()[CONFIG].replace(b'"lora_alpha": 16', b'"lora_alpha": Infinity')),
        "CONFIG_VALUE_INVALID",
    ),
    "config-alpha-string": (lambda: with_config(lora_alpha="sixteen"), "CONFIG_VALUE_INVALID"),
    "config-alpha-negative": (lambda: with_config(lora_alpha=-16), "CONFIG_VALUE_INVALID"),
    "config-alpha-zero": (lambda: with_config(lora_alpha=0), "CONFIG_VALUE_INVALID"),
    "config-2MB": (lambda: with_config(notes="x" * 2_000_000), "CONFIG_INVALID_JSON"),
    "config-5000-digit-int": (
        lambda: raw_config(good()[CONFIG].replace(b'"r": 8', b'"r": ' + b"9" * 5000)),
        "CONFIG_INVALID_JSON",
    ),
    "config-lone-surrogate": (
        lambda: raw_config(good()[CONFIG].replace(b'"r": 8', b'"r": 8, "note": "\\udc80"')),
        "CONFIG_INVALID_JSON",
    ),
    "config-not-an-object": (lambda: raw_config(b"[1, 2, 3]"), "CONFIG_INVALID_JSON"),
}


# --- running one case -----------------------------------------------------------------------


def measured(validate: Callable[[], Any]) -> tuple[set[str], float, int, Any]:
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = validate()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    json.dumps(report.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")  # printable
    codes = {f.code for f in report.findings}
    return codes, elapsed, peak, report


# written there by the test tooling of other tests running at the same time
NOT_OURS = {".pytest_cache", ".hypothesis"}


def outside_temp() -> set[str]:
    """What exists in the places validation must never write: the home folder (three levels)
    and the working directory."""
    found: set[str] = set()
    for root in (Path.home(), Path.cwd()):
        for depth in ("*", "*/*", "*/*/*"):
            found |= {str(p) for p in root.glob(depth) if not NOT_OURS & set(p.parts)}
    return found


def judge(case: Any, expected: str, validate: Callable[[], Any]) -> Any:
    case.expect(expected)
    before = outside_temp()
    codes, elapsed, peak, report = measured(validate)
    written = outside_temp() - before
    assert not written, f"written outside temp: {sorted(written)[:5]}"
    errors = sorted({f.code for f in report.findings if f.severity == "error"})
    case.saw(f"{','.join(errors) or 'VALID'} in {elapsed:.1f}s, {peak / 2**20:.0f} MB")
    assert codes <= ALL_CODES, codes - ALL_CODES
    assert expected in errors, report.findings
    assert elapsed < MAX_SECONDS
    assert peak < MAX_PEAK_BYTES
    return report


@pytest.fixture
def archive_source(s3_bucket: Any, tmp_path: Path) -> Callable[[str, str, bytes], str]:
    def make(transport: str, ext: str, data: bytes) -> str:
        path = tmp_path / f"adapter.{ext}"
        path.write_bytes(data)
        if transport == "local":
            return str(path)
        key = f"hostile/{time.monotonic_ns()}/adapter.{ext}"
        put_file(s3_bucket.client, s3_bucket.bucket, key, path)
        if transport == "presigned":
            return raw_presign(s3_bucket.client, s3_bucket.bucket, key)
        return f"s3://{s3_bucket.bucket}/{key}"

    return make


@pytest.mark.parametrize("transport", ["local", "presigned", "s3"])
@pytest.mark.parametrize("name", list(ARCHIVES))
def test_hostile_archive(name: str, transport: str, archive_source: Any, case: Any) -> None:
    ext, build, expected = ARCHIVES[name]
    source = archive_source(transport, ext, build())
    judge(case, expected, lambda: validate_source(source, L8, options=OPTIONS))


@pytest.mark.parametrize("transport", ["local", "hub"])
@pytest.mark.parametrize("name", list(FILES))
def test_hostile_files(
    name: str, transport: str, tmp_path: Path, local_hub: Any, case: Any
) -> None:
    build, expected = FILES[name]
    files = build()
    if transport == "local":
        source = str(tmp_path / "adapter.zip")
        Path(source).write_bytes(zip_bytes(files, compress=False))
    else:
        slug = f"case-{list(FILES).index(name)}"
        repo = local_hub.repo(f"hostile/{slug}")
        for file_name, data in files.items():
            (repo / file_name).write_bytes(data)
        source = f"hf://hostile/{slug}"
    judge(
        case,
        expected,
        lambda: validate_source(source, L8, options=OPTIONS, hf_endpoint=local_hub.endpoint),
    )


# --- sources that misbehave over HTTP --------------------------------------------------------


class HostileServer:
    """A loopback server for URL cases: hangs, drips, floods, loops, redirects to metadata."""

    def __init__(self) -> None:
        payload = good_zip()
        seen: list[str] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                route = self.path.split("?")[0]
                seen.append(route)
                try:
                    if route == "/hang.zip":  # headers, then silence
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes 0-9/{len(payload)}")
                        self.send_header("Content-Length", "10")
                        self.end_headers()
                        self.wfile.flush()
                        time.sleep(30)
                    elif route == "/drip.zip":  # a byte every half second
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes 0-65535/{len(payload)}")
                        self.send_header("Content-Length", "65536")
                        self.end_headers()
                        for _ in range(120):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.5)
                    elif route == "/endless.zip":  # ignores Range, never ends
                        self.send_response(200)
                        self.end_headers()
                        chunk = bytes(1 << 20)
                        while True:
                            self.wfile.write(chunk)
                    elif route == "/loop.zip":
                        self.send_response(302)
                        self.send_header("Location", self.path)
                        self.end_headers()
                    elif route == "/to-metadata.zip":
                        self.send_response(307)
                        self.send_header(
                            "Location", "http://169.254.169.254/latest/meta-data/iam/x.zip"
                        )
                        self.end_headers()
                    elif route == "/denied.zip":
                        body = (
                            b"<Error><Code>AccessDenied</Code><Message>secret internal "
                            b"detail: arn:aws:iam::123456789012:role/x</Message></Error>"
                        )
                        self.send_response(403)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def url(self, route: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return (
            f"{self.base}{route}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={stamp}"
            "&X-Amz-Expires=21600&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeefcafe"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


URLS = {
    "hangs-after-headers": ("/hang.zip", "S3_UNREACHABLE"),
    "drips-a-byte-at-a-time": ("/drip.zip", "S3_UNREACHABLE"),
    "endless-body-ignoring-range": ("/endless.zip", "S3_UNREACHABLE"),
    "redirect-loop": ("/loop.zip", "S3_UNREACHABLE"),
    "redirect-to-metadata-service": ("/to-metadata.zip", "SOURCE_URL_REFUSED"),
    "403-body-not-echoed": ("/denied.zip", "S3_UNREACHABLE"),
}


@pytest.mark.parametrize("name", list(URLS))
def test_hostile_url(name: str, hostile_server: HostileServer, case: Any) -> None:
    route, expected = URLS[name]
    url = hostile_server.url(route)
    report = judge(case, expected, lambda: validate_source(url, L8, options=OPTIONS))
    text = json.dumps(report.model_dump(mode="json"))
    assert "deadbeefcafe" not in text and "arn:aws" not in text and "secret internal" not in text
    assert all(f.code in UNREADABLE_CODES for f in report.findings if f.severity == "error")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/adapter.zip?X-Amz-Signature=abc",
        "http://[fe80::1]/adapter.zip?X-Amz-Signature=abc",
        "http://metadata.google.internal/adapter.zip?X-Amz-Signature=abc",
        "http://0.0.0.0/adapter.zip?X-Amz-Signature=abc",
    ],
    ids=["aws-metadata", "ipv6-link-local", "gcp-metadata-name", "unspecified"],
)
def test_link_local_urls_are_never_requested(url: str, case: Any) -> None:
    case.expect("SOURCE_URL_REFUSED, no request")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    url += f"&X-Amz-Date={stamp}&X-Amz-Expires=21600"
    report = validate_source(url, L8, options=OPTIONS)
    codes = [f.code for f in report.findings if f.severity == "error"]
    case.saw(",".join(codes))
    assert codes == ["SOURCE_URL_REFUSED"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ftp://example.com/adapter.zip?X-Amz-Signature=abc", "SOURCE_UNREADABLE"),
        ("https://example.com/adapter.zip?token=abc", "S3_NOT_PRESIGNED"),
        ("file:///etc/passwd", "SOURCE_UNREADABLE"),
    ],
    ids=["ftp-scheme", "not-presigned-query-never-fetched", "file-url-not-an-archive"],
)
def test_unusable_urls_are_refused_before_any_request(
    source: str, expected: str, case: Any
) -> None:
    judge(case, expected, lambda: validate_source(source, L8, options=OPTIONS))


# --- local folders: only the adapter is hashed and staged -----------------------------------


def test_a_huge_extra_file_is_neither_hashed_nor_staged(
    tmp_path: Path, s3_bucket: Any, case: Any
) -> None:
    case.expect("8 GiB optimizer.pt not read; staged = adapter + <1 MiB")
    folder = write_adapter(tmp_path / "out", L8, modules=("q_proj",))
    before = folder_fingerprint(folder)
    with (folder / "optimizer.pt").open("wb") as fh:  # sparse: costs no disk
        fh.truncate(8 << 30)
    (folder / "checkpoint-500").mkdir()
    write_adapter(folder / "checkpoint-500", L8, modules=("q_proj",), seed=9)
    started = time.monotonic()
    assert folder_fingerprint(folder) == before
    staged = stage_source(AdapterSource.parse(str(folder)), f"s3://{s3_bucket.bucket}/stage")
    adapter = sum((folder / n).stat().st_size for n in (CONFIG, WEIGHTS))
    case.saw(f"staged {staged.size:,} bytes for a {adapter:,}-byte adapter")
    assert staged.size <= adapter + (1 << 20)
    assert time.monotonic() - started < MAX_SECONDS


def test_a_symlinked_secret_is_never_staged(tmp_path: Path, s3_bucket: Any, case: Any) -> None:
    case.expect("credentials link left out; asked for: refused")
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = very-secret-value")
    folder = write_adapter(tmp_path / "out", L8, modules=("q_proj",))
    os.symlink(secret, folder / "notes.txt")
    os.symlink(tmp_path / "missing", folder / "dangling")  # validation must not trip on it
    report = validate_source(str(folder), L8)
    assert not report.errors, report.findings
    staged = stage_source(AdapterSource.parse(str(folder)), f"s3://{s3_bucket.bucket}/stage")
    body = s3_bucket.client.get_object(Bucket=staged.bucket, Key=staged.key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = sorted(zf.namelist())
    assert names == [CONFIG, WEIGHTS] and b"very-secret-value" not in body
    from prefect_together_lora.errors import SourceError

    with pytest.raises(SourceError, match="symbolic link"):
        stage_source(
            AdapterSource.parse(str(folder)),
            f"s3://{s3_bucket.bucket}/stage",
            extra_files=["*.txt"],
        )
    case.saw(f"staged {names}; extra link refused")


def test_lone_surrogate_tensor_name_prints_in_the_cli(tmp_path: Path, case: Any) -> None:
    """The human CLI output used to crash on a lone surrogate (UnicodeEncodeError)."""
    import subprocess
    import sys

    case.expect("exit 1, SAFETENSORS_CORRUPT printed")
    folder = tmp_path / "a"
    folder.mkdir()
    files = FILES["header-lone-surrogate-name"][0]()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect_together_lora.cli",
            "validate",
            str(folder),
            "--base-model",
            L8,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    case.saw(f"exit {done.returncode}")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "SAFETENSORS_CORRUPT" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("transport", ["local", "presigned", "s3"])
def test_control_the_unmutated_adapter_is_valid(
    transport: str, archive_source: Any, case: Any
) -> None:
    """The matrix's control: the adapter every hostile case is made from validates."""
    case.expect("VALID")
    source = archive_source(transport, "zip", good_zip())
    report = validate_source(source, L8, options=OPTIONS)
    case.saw("VALID" if report.valid else ",".join(f.code for f in report.errors))
    assert report.valid, report.findings


# --- through the flow: a hostile adapter is never uploaded, and the run ends with a report ----

FLOW_CASES = {
    "tar.gz-truncated": lambda: ("tar.gz", truncated_tar_gz()),
    "tar-symlink-config": lambda: ("tar.gz", tar_with(tarfile.SYMTYPE)),
    "header-lone-surrogate-name": lambda: (
        "zip",
        zip_bytes(FILES["header-lone-surrogate-name"][0](), compress=False),
    ),
    "header-8M-empty-objects": lambda: (
        "zip",
        zip_bytes(FILES["header-8M-empty-objects"][0](), compress=False),
    ),
}


@pytest.mark.together_emulator(dedicated_only=False)
@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("name", list(FLOW_CASES))
def test_hostile_adapter_is_never_uploaded(
    name: str,
    api: str,
    prefect_harness: Any,
    together_emulator: Any,
    s3_bucket: Any,
    tmp_path: Path,
    case: Any,
) -> None:
    from prefect_together_lora.errors import AdapterInvalid
    from prefect_together_lora.flows import publish_adapter
    from tests.helpers import read_artifacts

    case.expect("Failed at validate, 0 uploads, a report")
    ext, data = FLOW_CASES[name]()
    key = f"flow/{name}.{ext}"
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=data)
    model = f"hostile-{api}-{list(FLOW_CASES).index(name)}"
    state = publish_adapter(
        source=f"s3://{s3_bucket.bucket}/{key}",
        base_model=L8,
        model_name=model,
        api=api,
        credentials=together_emulator.credentials(),
        return_state=True,
    )
    failure = state.result(raise_on_failure=False)
    posts = [r for r in together_emulator.admin.requests(method="POST") if "/models" in r["path"]]
    report = read_artifacts(state).get(f"together-lora-report-{model}")
    case.saw(f"{state.type.value} at {failure.publish_result.failed_step}, {len(posts)} uploads")
    assert state.is_failed() and isinstance(failure, AdapterInvalid)
    assert failure.publish_result.failed_step == "validate" and not posts
    assert report is not None and "validate" in report.data
