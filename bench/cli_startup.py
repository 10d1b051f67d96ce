"""Benchmark: wall time of ``together-lora validate``, start to exit, as a user runs it.

A local adapter folder, and the same adapter as a zip behind a presigned URL on the local S3
server. Each is run ``--runs`` times as a fresh process; the table shows the median and best.

Targets (median): local folder <= 0.4 s, presigned zip <= 0.5 s.

    python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
TARGETS = {"local folder": 0.4, "presigned zip": 0.5}


def cli() -> list[str]:
    script = Path(sys.executable).parent / "together-lora"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect_together_lora.cli"]


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([*cli(), *args], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"validate failed ({done.returncode}): {done.stdout[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_s3_server() as endpoint:
        folder = write_adapter(Path(tmp) / "adapter", BASE)
        archive = zip_folder(folder, Path(tmp) / "adapter.zip")
        client = s3_client(endpoint)
        client.create_bucket(Bucket="bench")
        client.upload_file(str(archive), "bench", "adapter.zip")
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": "bench", "Key": "adapter.zip"}, ExpiresIn=6 * 3600
        )
        env = {**os.environ, **s3_env(endpoint)}
        sources = {"local folder": str(folder), "presigned zip": url}
        print(f"{'source':<15} {'median (s)':>10} {'best (s)':>9} {'target (s)':>10}  ok")
        results = {}
        for name, source in sources.items():
            timed(["validate", source, "--base-model", BASE], env)  # warm the disk cache
            runs = [
                timed(["validate", source, "--base-model", BASE], env) for _ in range(args.runs)
            ]
            median = statistics.median(runs)
            results[name] = median
            ok = median <= TARGETS[name]
            print(
                f"{name:<15} {median:>10.3f} {min(runs):>9.3f} {TARGETS[name]:>10.1f}  "
                f"{'yes' if ok else 'NO'}"
            )
    ok = all(results[n] <= TARGETS[n] for n in TARGETS)
    print(
        f"cli_startup: local_folder_s={results['local folder']:.3f} "
        f"presigned_zip_s={results['presigned zip']:.3f} runs={args.runs} ok={ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
