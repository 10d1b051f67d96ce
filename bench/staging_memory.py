"""Benchmark: staging a training output folder to S3 — memory, and what is sent.

A Trainer-like ``output_dir``: an adapter of ``--size`` (a real PEFT header, zero-filled
weights), a sparse ``optimizer.pt`` of ``--extra`` (costs no disk), and a ``checkpoint-500/``
folder with its own adapter. Staging runs in a child process (its peak RSS is what is
measured) against the local S3 server.

Targets: peak RSS < 200 MB; the staged archive <= the adapter's size + 1 MiB.

    python bench/staging_memory.py [--size 2G] [--extra 2G]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
CHILD = """
import json, resource, sys, time
from prefect_together_lora.sources import AdapterSource
from prefect_together_lora.staging import stage_source
started = time.perf_counter()
staged = stage_source(AdapterSource.parse(sys.argv[1]), sys.argv[2])
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "size": staged.size,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def parse_size(text: str) -> int:
    unit = text[-1].upper()
    return int(float(text[:-1]) * UNITS[unit]) if unit in UNITS else int(text)


def write_output_dir(root: Path, size: int, extra: int) -> int:
    """The adapter (about ``size`` bytes, as bench/validate_bytes.py builds it) plus what a
    Trainer leaves beside it; returns the adapter files' size."""
    from bench.validate_bytes import build

    build(root, size, "zeros")
    with (root / "optimizer.pt").open("wb") as fh:
        fh.truncate(extra)
    (root / "trainer_state.json").write_text("{}")
    checkpoint = root / "checkpoint-500"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text("{}")
    with (checkpoint / "adapter_model.safetensors").open("wb") as fh:
        fh.truncate(size // 2)
    names = ("adapter_config.json", "adapter_model.safetensors")
    return sum((root / n).stat().st_size for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G", help="adapter size (K/M/G)")
    parser.add_argument("--extra", default="2G", help="optimizer.pt size beside it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="staging-bench-") as tmp, run_s3_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket="stage")
        adapter = write_output_dir(
            Path(tmp) / "output", parse_size(args.size), parse_size(args.extra)
        )
        env = {**os.environ, **s3_env(endpoint)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(Path(tmp) / "output"), "s3://stage/staged"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        wall = time.perf_counter() - started
    peak_mb = result["peak_rss_kb"] / 1024
    overhead = result["size"] - adapter
    ok = peak_mb < 200 and overhead <= (1 << 20)
    print(f"{'adapter':>14} {'staged':>14} {'extra sent':>11} {'peak RSS':>9} {'seconds':>8}  ok")
    print(
        f"{adapter:>14,} {result['size']:>14,} {overhead:>11,} {peak_mb:>7.0f}MB "
        f"{result['seconds']:>8.1f}  {'yes' if ok else 'NO'}"
    )
    print(
        f"staging_memory: adapter_bytes={adapter} staged_bytes={result['size']} "
        f"extra_bytes={overhead} peak_rss_mb={peak_mb:.0f} seconds={result['seconds']:.1f} "
        f"wall_s={wall:.1f} ok={ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
