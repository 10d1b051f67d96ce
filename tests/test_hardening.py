"""Hostile inputs never crash, hang or balloon memory: they always become coded findings.

Property-based tests (hypothesis) over the safetensors header parser and the archive readers,
the named hostile cases, and a slow-marked fuzz run of thousands of mutated archives.
"""

from __future__ import annotations

import io
import json
import random
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.sources.archive import read_tar, read_zip
from prefect_together_lora.sources.resolve import ResolvedSource, resolve_source
from prefect_together_lora.sources.safetensors import (
    HeaderProblem,
    parse_header,
    read_header_bytes,
    tensors_from_document,
)
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from prefect_together_lora.validation.codes import RULES, rules_markdown
from prefect_together_lora.validation.rules import ALL_CODES, Findings
from prefect_together_lora.validation.validator import validate_resolved
from tests.adapter_cases import L8

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)


def test_docs_rules_table_is_generated_from_the_registry() -> None:
    docs = Path(__file__).parents[1] / "docs" / "rules.md"
    assert docs.read_text() == rules_markdown(), (
        "docs/rules.md is stale: python -m prefect_together_lora.validation.codes > docs/rules.md"
    )


def test_unregistered_codes_and_severities_are_refused() -> None:
    findings = Findings()
    with pytest.raises(ValueError, match="not registered"):
        findings.error("MADE_UP_CODE", "x")
    with pytest.raises(ValueError, match="at most warning"):
        findings.error("TENSOR_DTYPE_F32", "x")
    findings.warning("TENSOR_DTYPE_F32", "x")  # the usual fix fills a missing hint
    assert findings.items[0].hint == RULES["TENSOR_DTYPE_F32"].fix


def parse_bytes(data: bytes) -> None:
    stream = io.BytesIO(data)
    try:
        _, raw = read_header_bytes(stream.read, len(data))
        parse_header(raw, len(data))
    except HeaderProblem:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_header_parser_never_crashes_on_bytes(data: bytes) -> None:
    parse_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=512))
@pytest.mark.reliability("any header length: never trusted")
def test_header_length_field_is_never_trusted(n: int, rest: bytes) -> None:
    parse_bytes(struct.pack("<Q", n) + rest)


_ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["BF16", "F16", "F32", "U8", "F4", "Q4_K", "", 7]),
        "shape": st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4) | st.just("nope"),
        "data_offsets": st.lists(
            st.integers(min_value=-10, max_value=2**33), min_size=0, max_size=3
        ),
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.text(max_size=20), _ENTRY | st.integers() | st.none(), max_size=6),
    st.integers(min_value=0, max_value=2**34),
)
def test_structured_headers_parse_or_explain(document, file_size: int) -> None:
    try:
        header = tensors_from_document(document, 100, file_size)
    except HeaderProblem as exc:
        assert str(exc)
        return
    position = 0  # success implies a contiguous, exactly-sized, in-file layout
    for tensor in sorted(header.tensors.values(), key=lambda t: t.begin):
        assert tensor.begin == position
        position = tensor.end
    assert 8 + 100 + position == file_size


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fuzz")
    folder = write_adapter(root / "a", L8, modules=("q_proj", "v_proj"))
    return {
        "zip": zip_folder(folder, root / "a.zip").read_bytes(),
        "zip-stored": zip_folder(folder, root / "s.zip", compress=False).read_bytes(),
        "tar": tar_folder(folder, root / "a.tar", gzip=False).read_bytes(),
        "tar.gz": tar_folder(folder, root / "a.tar.gz").read_bytes(),
    }


def validate_bytes(data: bytes, suffix: str, tmp: Path) -> set[str]:
    path = tmp / f"input.{suffix}"
    path.write_bytes(data)
    report = validate_resolved(resolve_source(AdapterSource.parse(str(path))), L8)
    json.dumps(report.model_dump(mode="json"))  # always serialisable
    found = {f.code for f in report.findings}
    assert found <= ALL_CODES, found - ALL_CODES
    return found


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(max(1, len(out)))
        if op == 0:
            del out[pos:]
        elif op == 1:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 2:
            out[pos : pos + 8] = rng.randbytes(8)
        elif op == 3:
            out[pos:pos] = rng.randbytes(rng.randint(1, 64))
        else:
            out[pos : pos + 8] = struct.pack("<Q", rng.choice([0, 2**32 - 1, 2**50, 2**64 - 1]))
    return bytes(out)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from(["zip", "zip-stored", "tar", "tar.gz"]), st.randoms(use_true_random=False))
@pytest.mark.reliability("mutated archives: findings, no crash")
def test_mutated_archives_always_give_findings(archives, tmp_path, kind, rng) -> None:
    suffix = {"zip-stored": "zip"}.get(kind, kind)
    validate_bytes(mutate(archives[kind], rng), suffix, tmp_path)


def validate_url(data: bytes, suffix: str, s3_bucket, index: int) -> set[str]:
    from tests.helpers import raw_presign

    key = f"fuzz/{index}.{suffix}"
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=data)
    url = raw_presign(s3_bucket.client, s3_bucket.bucket, key)
    source = AdapterSource.parse(url)
    report = validate_resolved(
        ResolvedSource(source=source, fingerprint="fuzz", url=source.url), L8
    )
    json.dumps(report.model_dump(mode="json"))
    found = {f.code for f in report.findings}
    assert found <= ALL_CODES, found - ALL_CODES
    return found


@pytest.mark.slow
def test_fuzz_run(archives, tmp_path: Path, s3_bucket) -> None:
    """≥ 2000 generated inputs — from disk, and one in four through a presigned URL (ranged
    HTTP reads) — every one validates to a report with known codes."""
    rng = random.Random(20261126)
    kinds = list(archives)
    seen: set[str] = set()
    for index in range(2400):
        kind = kinds[index % len(kinds)]
        suffix = {"zip-stored": "zip"}.get(kind, kind)
        data = mutate(archives[kind], rng)
        if index % 4 == 3:
            seen |= validate_url(data, suffix, s3_bucket, index)
        else:
            seen |= validate_bytes(data, suffix, tmp_path)
    # the mutations reach every tier, not just the first check
    assert {"ARCHIVE_CORRUPT", "SAFETENSORS_CORRUPT"} & seen and len(seen) >= 5, seen


# --- the named hostile cases -------------------------------------------------------------------


def header_file(document: dict, data_len: int, n: int | None = None) -> bytes:
    raw = json.dumps(document).encode()
    return struct.pack("<Q", len(raw) if n is None else n) + raw + bytes(data_len)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than the 8-byte"),
        (struct.pack("<Q", 2**50) + b"{}", "exceeds"),
        (struct.pack("<Q", 100) + b"{}", "past the end"),
        (
            header_file({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [-4, 0]}}, 4),
            "negative",
        ),
        (
            header_file(
                {
                    "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
                    "b": {"dtype": "BF16", "shape": [2], "data_offsets": [2, 6]},
                },
                6,
            ),
            "overlaps",
        ),
        (header_file({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]}}, 12), "hole"),
        (
            header_file({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, 0),
            "truncated",
        ),
        (
            header_file({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, 9),
            "trailing",
        ),
        (header_file({"a": {"dtype": "NF4", "shape": [2], "data_offsets": [0, 4]}}, 4), "dtype"),
        (
            header_file(
                {"a": {"dtype": "BF16", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, 4
            ),
            "overflows",
        ),
        (header_file({"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}}, 4), "needs"),
        (header_file({"__metadata__": {"a": 1}}, 0), "strings"),
        (struct.pack("<Q", 4) + b"[1,]", "start with"),
        (struct.pack("<Q", 3) + b"{\xff}", "UTF-8"),
    ],
)
def test_named_header_cases(data: bytes, reason: str) -> None:
    with pytest.raises(HeaderProblem, match=reason):
        _, raw = read_header_bytes(io.BytesIO(data).read, len(data))
        parse_header(raw, len(data))


@pytest.mark.reliability("zip bomb: finding, bounded memory")
def test_zip_bomb_costs_bounded_memory(tmp_path: Path) -> None:
    """A deflated config of 200 MB of spaces and a 'header' claiming 20 MB of zeros."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("adapter_config.json", "w") as fh:
            chunk = b" " * (1 << 20)
            for _ in range(200):
                fh.write(chunk)
        with zf.open("adapter_model.safetensors", "w") as fh:
            fh.write(struct.pack("<Q", 20_000_000))
            for _ in range(100):
                fh.write(bytes(1 << 20))
    assert bomb.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        found = validate_bytes(bomb.read_bytes(), "zip", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "CONFIG_INVALID_JSON" in found
    assert peak < 16 * 1024 * 1024, peak


def test_bomb_header_is_rejected_after_one_byte() -> None:
    reads: list[int] = []
    data = io.BytesIO(struct.pack("<Q", 20_000_000) + bytes(64))

    def read(n: int) -> bytes:
        reads.append(n)
        return data.read(n)

    with pytest.raises(HeaderProblem, match="start with"):
        read_header_bytes(read, None)
    assert sum(reads) <= 9


def test_non_utf8_names_and_ten_thousand_entries(tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", L8, modules=("q_proj",))
    archive = tmp_path / "many.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        for f in folder.iterdir():
            tf.add(f, f.name)
        info = tarfile.TarInfo("caf\xe9/notes.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    assert validate_bytes(archive.read_bytes(), "tar", tmp_path) <= {"BASE_MODEL_QUANTIZED"}
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
        for i in range(10_000):
            zf.writestr(f"logs/{i:05d}.txt", b"")
    with zipfile.ZipFile(many) as zf:
        assert len(zf.infolist()) == 10_002
    assert not validate_bytes(many.read_bytes(), "zip", tmp_path) & {"ARCHIVE_UNSAFE_ENTRY"}


def test_readers_accept_only_their_format() -> None:
    from prefect_together_lora.errors import SourceError

    with pytest.raises(SourceError):
        read_zip(io.BytesIO(b"not a zip at all"))
    with pytest.raises(SourceError):
        read_tar(io.BytesIO(zlib.compress(b"x" * 100)), stream=True, fmt="tar.gz")
