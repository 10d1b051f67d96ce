"""The benchmark scripts still run (tiny sizes; no timing asserted: targets live in the
benchmarks themselves, run on demand)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def run(script: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def test_validate_bytes_runs() -> None:
    lines = run("validate_bytes.py", "--sizes", "1M")
    assert lines[-1] == "validate-bytes: cases=4 targets_missed=0"
    assert {line.split("|")[0].strip() for line in lines[2:-1]} == {
        "zip-stored",
        "zip-deflated",
        "tar.gz",
        "hub",
    }


def test_eval_throughput_runs() -> None:
    lines = run("eval_throughput.py", "--rows", "20", "--concurrency", "4", "--latency-ms", "5")
    assert re.fullmatch(r"eval-throughput: ratio_c32=nan lost=0 throttled=\d+", lines[-1])
    assert len(lines) == 5  # header, rule, two runs (no limit / limited), summary
