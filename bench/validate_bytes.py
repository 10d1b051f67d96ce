"""Benchmark: what header-only validation reads, against a full download.

Adapters from 1 MiB to 2 GiB (a real PEFT safetensors header, zero-filled data) as zip
(stored, deflated), tar.gz and a Hub repo, read over loopback through presigned URLs on the
strict local S3 server and through the local Hub. Prints one table.

Targets: zip and Hub <= 256 KiB and <= 4 requests at every size; tar.gz <= the offset of the
last needed member (end of the safetensors header, uncompressed) + 64 KiB.

    python bench/validate_bytes.py [--sizes 1M,32M,256M,2G] [--fill zeros|random]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from prefect_together_lora.testing.adapters import (
    adapter_config,
    lora_tensors,
    tar_folder,
    write_adapter,
    zip_folder,
)
from prefect_together_lora.testing.hub import run_local_hub
from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env
from prefect_together_lora.validation.validator import validate_source

BASE = "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
KIB = 1024


def parse_size(text: str) -> int:
    return (
        int(float(text[:-1]) * UNITS[text[-1].upper()]) if text[-1].upper() in UNITS else int(text)
    )


def shape_for(target: int) -> tuple[int, int, str]:
    """(rank, layers, dtype) of a 70B all-module LoRA whose file is about ``target`` bytes."""
    per_param = 161_792  # sum of in+out over the 7 modules of Llama-3.1-70B
    for dtype, width in (("BF16", 2), ("F32", 4)):
        for rank in (1, 2, 4, 8, 16, 32, 64):
            layers = -(-target // (per_param * rank * width))
            if layers <= 80:
                return rank, max(1, layers), dtype
    return 64, 80, "F32"


def build(folder: Path, target: int, fill: str) -> Path:
    rank, layers, dtype = shape_for(target)
    tensors = lora_tensors(BASE, rank=rank, layers=range(layers), modules=MODULES, dtype=dtype)
    return write_adapter(
        folder,
        BASE,
        tensors=tensors,
        fill=fill,
        config=adapter_config(BASE, rank=rank, modules=MODULES),
    )


def needed_tar_offset(archive: Path) -> int:
    """Uncompressed offset where the safetensors header ends inside the tar stream."""
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            if member.name.endswith("adapter_model.safetensors"):
                handle = tf.extractfile(member)
                assert handle is not None
                n = int.from_bytes(handle.read(8), "little")
                return member.offset_data + 8 + n
    raise RuntimeError("no safetensors member")


def full_download(urls: list[str]) -> tuple[int, float]:
    started, total = time.perf_counter(), 0
    with httpx.Client(timeout=600, follow_redirects=True) as client:
        for url in urls:
            with client.stream("GET", url) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    total += len(chunk)
    return total, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,32M,256M,2G")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--fill",
        choices=["zeros", "random"],
        default="zeros",
        help="tensor data: zeros (compresses away) or random (incompressible)",
    )
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-validate-"))
    rows: list[list[str]] = []
    failures = 0
    try:
        with run_s3_server() as endpoint, run_local_hub(work / "hub") as (hub_endpoint, _):
            os.environ.update(s3_env(endpoint))
            s3 = s3_client(endpoint)
            s3.create_bucket(Bucket="bench")
            for size in sizes:
                case = work / f"case-{size}"
                folder = build(case / "adapter", size, args.fill)
                weights = (folder / "adapter_model.safetensors").stat().st_size
                archives = {
                    "zip-stored": zip_folder(folder, case / "stored.zip", compress=False),
                    "zip-deflated": zip_folder(folder, case / "deflated.zip"),
                    "tar.gz": tar_folder(folder, case / "adapter.tar.gz"),
                }
                for kind, archive in archives.items():
                    key = f"{size}/{archive.name}"
                    s3.upload_file(str(archive), "bench", key)
                    url = s3.generate_presigned_url(
                        "get_object", Params={"Bucket": "bench", "Key": key}, ExpiresIn=6 * 3600
                    )
                    started = time.perf_counter()
                    report = validate_source(url, BASE)
                    wall = time.perf_counter() - started
                    full_bytes, full_wall = full_download([url])
                    if kind == "tar.gz":
                        limit = needed_tar_offset(archive) + 64 * KIB
                        ok = report.bytes_read <= limit
                        target = f"<= {limit / KIB:,.0f} KiB"
                    else:
                        ok = report.bytes_read <= 256 * KIB and report.requests <= 4
                        target = "<= 256 KiB, <= 4 req"
                    ok = ok and report.valid
                    failures += not ok
                    rows.append(
                        table_row(kind, weights, report, wall, full_bytes, full_wall, target, ok)
                    )
                repo = work / "hub" / "bench" / f"lora-{size}"
                repo.mkdir(parents=True)
                for item in folder.iterdir():
                    os.link(item, repo / item.name)
                started = time.perf_counter()
                report = validate_source(f"hf://bench/lora-{size}", BASE, hf_endpoint=hub_endpoint)
                wall = time.perf_counter() - started
                base = f"{hub_endpoint}/bench/lora-{size}/resolve/main"
                full_bytes, full_wall = full_download(
                    [f"{base}/adapter_config.json", f"{base}/adapter_model.safetensors"]
                )
                ok = report.valid and report.bytes_read <= 256 * KIB and report.requests <= 4
                failures += not ok
                rows.append(
                    table_row(
                        "hub",
                        weights,
                        report,
                        wall,
                        full_bytes,
                        full_wall,
                        "<= 256 KiB, <= 4 req",
                        ok,
                    )
                )
                shutil.rmtree(case)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    headers = [
        "format",
        "adapter",
        "bytes read",
        "requests",
        "wall s",
        "full download",
        "full s",
        "target",
        "met",
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"validate-bytes: cases={len(rows)} targets_missed={failures}")
    return 1 if failures else 0


def table_row(
    kind: str,
    weights: int,
    report: Any,
    wall: float,
    full_bytes: int,
    full_wall: float,
    target: str,
    ok: bool,
) -> list[str]:
    return [
        kind,
        _size(weights),
        f"{report.bytes_read / KIB:,.1f} KiB",
        str(report.requests),
        f"{wall:.3f}",
        _size(full_bytes),
        f"{full_wall:.3f}",
        target,
        "yes" if ok else "NO",
    ]


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n} B"


if __name__ == "__main__":
    raise SystemExit(main())
