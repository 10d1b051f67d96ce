"""Benchmark: evaluation throughput against the emulator (prints a table).

400 rows (800 requests: adapter and base) with a fixed 100 ms latency, at concurrency 1, 8 and
32, without and with a rate limit. Ideal wall time is N·L/C (N requests, L latency, C
concurrency). Target: ratio <= 1.2 when not rate-limited; 0 rows lost always. The last line is

    eval-throughput: ratio_c32=<ratio at concurrency 32, no limit> lost=<rows lost> throttled=<429s>

    python bench/eval_throughput.py [--rows 400] [--latency-ms 100] [--rate-limit-rps 100]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_together_lora.client import AsyncTogetherClient, TogetherClient
from prefect_together_lora.evaluation.dataset import EvalRow
from prefect_together_lora.evaluation.runner import run_eval
from prefect_together_lora.evaluation.store import MemoryAnswerStore
from prefect_together_lora.options import EvalOptions
from prefect_together_lora.retry import RETRYABLE_STATUS, RetryPolicy
from prefect_together_lora.testing.emulator import EmulatorAdmin, run_emulator_process

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
KEY = "bench-key"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rate-limit-rps", type=float, default=50.0)
    parser.add_argument(
        "--rate-limit-burst",
        type=int,
        default=0,
        help="bucket size; default: one second's worth of requests",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = [
        EvalRow(id=f"r{i}", prompt=f"Question {i}?", expected=[f"answer {i}"])
        for i in range(args.rows)
    ]
    results = []
    # The emulator runs in its own process, as the real service is remote: in-process it would
    # share this process's GIL. The adapter is marked Complete by hand; its job never runs.
    with run_emulator_process(
        "--legacy-serverless",  # the v1 serverless path: no deployment to wait for
        "--job-seconds",
        "3600",
        "--latency-ms",
        str(args.latency_ms),
        "--hf-endpoint",
        "http://127.0.0.1:9",
    ) as url:
        admin = EmulatorAdmin(url)
        with TogetherClient(KEY, url) as client:
            job = client.upload_adapter("bench-lora", "acme/bench", BASE)
        admin.set_job_status(job.job_id, "Complete", "Job is Complete")
        for limited in (False, True):
            admin.configure(
                rate_limit_rps=args.rate_limit_rps if limited else None,
                rate_limit_burst=args.rate_limit_burst or int(args.rate_limit_rps),
            )
            for concurrency in levels:
                time.sleep(1.0)  # refill the bucket between runs
                wall, report = asyncio.run(one_run(url, rows, job.model_name, concurrency))
                n = 2 * len(rows)
                ideal = n * args.latency_ms / 1000 / concurrency
                lost = sum(
                    r.adapter.error is not None or r.base.error is not None for r in report.rows
                )
                results.append(
                    (concurrency, limited, wall, ideal, wall / ideal, report.throttled, lost)
                )
        admin.close()
    headers = [
        "concurrency",
        "rate limit",
        "wall s",
        "ideal N*L/C s",
        "ratio",
        "429s seen",
        "rows lost",
    ]
    print(" | ".join(headers))
    print("|".join("---" for _ in headers))
    for c, limited, wall, ideal, ratio, throttled, lost in results:
        limit = f"{args.rate_limit_rps:g} rps" if limited else "none"
        print(f"{c} | {limit} | {wall:.2f} | {ideal:.2f} | {ratio:.2f} | {throttled} | {lost}")
    c32 = next((r[4] for r in results if r[0] == 32 and not r[1]), float("nan"))
    lost_total = sum(r[6] for r in results)
    throttled_total = sum(r[5] for r in results)
    print(f"eval-throughput: ratio_c32={c32:.2f} lost={lost_total} throttled={throttled_total}")
    return 0 if lost_total == 0 and (math.isnan(c32) or c32 <= 1.2) else 1


async def one_run(url: str, rows: list[EvalRow], model: str, concurrency: int):
    retry = RetryPolicy(retry_statuses=RETRYABLE_STATUS - {429, 503})
    async with AsyncTogetherClient(KEY, url, retry=retry, max_connections=256) as client:
        started = time.perf_counter()
        report = await run_eval(
            client,
            rows,
            model,
            BASE,
            EvalOptions(concurrency=concurrency, retry_deadline_s=600),
            store=MemoryAnswerStore(),
        )
        return time.perf_counter() - started, report


if __name__ == "__main__":
    raise SystemExit(main())
