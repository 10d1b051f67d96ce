"""The benchmark scripts still run (tiny sizes; no timing asserted: targets live in the
benchmarks themselves, run on demand)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def run(script: str, *args: str, timing: bool = False) -> list[str]:
    """The benchmark's output lines. With ``timing``, its exit code says whether a *timing*
    target was met: any outcome is fine here (timings are judged when it is run on demand)."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    allowed = (0, 1) if timing else (0,)
    assert result.returncode in allowed, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def test_validate_bytes_runs() -> None:
    # 32M: a stored zip whose header lies beyond the first 64 KiB tail read (the zip's
    # end-record pre-check once cost it a request and 64 KiB more, over the budget)
    lines = run("validate_bytes.py", "--sizes", "1M,32M")
    assert lines[-1] == "validate-bytes: cases=8 targets_missed=0"
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


def test_await_detection_meets_its_target() -> None:
    """Simulated clock: no timing here, the polling rule itself is what is measured."""
    lines = run("await_detection.py", "--durations", "5,60,600")
    assert re.fullmatch(
        r"await_detection: jobs=3 within_target=3 worst_lag_over_target=[01]\.\d\d .*", lines[-1]
    )


def test_staging_memory_sends_only_the_adapter() -> None:
    lines = run("staging_memory.py", "--size", "4M", "--extra", "64M", timing=True)
    found = re.fullmatch(r"staging_memory: adapter_bytes=(\d+) staged_bytes=(\d+) .*", lines[-1])
    assert found is not None, lines
    assert int(found.group(2)) <= int(found.group(1)) + (1 << 20)


def test_cli_startup_runs() -> None:
    lines = run("cli_startup.py", "--runs", "1", timing=True)
    assert re.fullmatch(
        r"cli_startup: local_folder_s=[\d.]+ presigned_zip_s=[\d.]+ runs=1 ok=(True|False)",
        lines[-1],
    )
