"""``make demo``: the whole flow, offline, on Prefect's embedded server, through Together's
current v2 API.

Starts a local S3 (moto server with real presigned-URL rules) and the Together emulator on free
ports, "trains" a Llama-3.1-8B LoRA adapter, stages it to S3, validates it through its presigned
URL, registers it as a model record and imports it by remote upload, waits until Together has
validated the revision, deploys an endpoint from the base's LoRA profile and attaches the
adapter, smoke-tests it (through a cold start), evaluates it against its base on the same
deployment, tears down what it created, prints the report, and stops everything it started.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
# Prefect reads its settings at import: keep the demo's database and results in .demo/ and use
# the embedded (ephemeral) server, whatever the user's own Prefect profile says.
(WORK / "prefect-home").mkdir(parents=True, exist_ok=True)  # before Prefect is imported
os.environ["PREFECT_HOME"] = str(WORK / "prefect-home")
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "true"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry writes
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the demo never talks to the real Hub
sys.path.insert(0, str(ROOT))

EVAL_ROWS = [
    ("How do I reset my password?", "Open Settings, then Security, then Reset password."),
    ("Where do I download my invoice?", "Billing, then Invoices, then Download."),
    ("How do I add a teammate?", "Settings, then Team, then Invite."),
    ("How do I change my email?", "Settings, then Profile, then Email."),
    ("How do I cancel my plan?", "Billing, then Plan, then Cancel."),
]


def print_progress(stop: threading.Event, since: datetime) -> None:
    """Print each task of the demo's runs as it finishes (the flow itself logs at WARNING)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    seen: set[Any] = set()
    with get_client(sync_client=True) as client:
        while True:
            done = stop.is_set()
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since))
            )
            for run in sorted(runs, key=lambda r: r.end_time or r.start_time or since):
                if run.id in seen or run.state is None or not run.state.is_final():
                    continue
                seen.add(run.id)
                mark = "ok" if run.state.is_completed() else run.state.name
                took = run.total_run_time.total_seconds()
                print(f"  {run.name.rsplit('-', 1)[0]:<16} {mark:<8} {took:6.1f}s", flush=True)
            if done:
                return
            stop.wait(0.5)


def main() -> int:
    from flows.train_and_publish import BASE_MODEL, train_and_publish
    from prefect_together_lora.publish_result import render_report
    from prefect_together_lora.testing.emulator import EmulatorAdmin, run_emulator
    from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env
    from prefect_together_lora.together.backend import ServingOptions

    WORK.mkdir(exist_ok=True)
    started = time.monotonic()
    model_name = f"support-bot-lora-{int(time.time())}"
    emulator = run_emulator(
        job_seconds=3, cold_start_calls=1, deploy_seconds=3, adapter_load_seconds=1
    )
    with run_s3_server() as s3_endpoint, emulator as url:
        print(f"local S3 on {s3_endpoint}, Together emulator on {url}")
        os.environ.update(s3_env(s3_endpoint))
        os.environ.update({"TOGETHER_API_KEY": "demo-key", "TOGETHER_BASE_URL": url})
        s3_client(s3_endpoint).create_bucket(Bucket="demo-adapters")

        # An eval set where the fine-tuned adapter knows the product and the base does not.
        admin = EmulatorAdmin(url)
        eval_path = WORK / "eval.jsonl"
        with eval_path.open("w") as fh:
            for i, (question, answer) in enumerate(EVAL_ROWS):
                fh.write(
                    json.dumps(
                        {
                            "id": f"faq-{i}",
                            "prompt": question,
                            "expected": answer,
                            "metric": "token_f1",
                            "tags": ["faq"],
                        }
                    )
                    + "\n"
                )
                # the adapter (called by its qualified v2 name) knows the product ...
                admin.script(f"acme-research/{model_name}", question, answer)
                # ... and its base, served by the same deployment, does not
                admin.script(BASE_MODEL, question, "Please check the documentation.")
        print("Running the flow (each step as it finishes):", flush=True)
        stop = threading.Event()
        printer = threading.Thread(
            target=print_progress, args=(stop, datetime.now(timezone.utc)), daemon=True
        )
        printer.start()
        try:
            result = train_and_publish(
                output_dir=str(WORK / "adapter"),
                model_name=model_name,
                staging_uri="s3://demo-adapters/staging",
                eval_set=str(eval_path),
                min_improvement_over_base=0.5,
                serving=ServingOptions(poll_initial_s=0.5, poll_max_s=2.0),
                teardown="delete",  # a demo leaves nothing running
            )
        finally:
            stop.set()
            printer.join(timeout=10)
        admin.close()
    print()
    print(render_report(result))
    billing = ", ".join(f"{r.kind} {r.name}" for r in result.billing) or "nothing"
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f}s: {result.verdict} through the "
        f"{result.api} API; the adapter was called as '{result.inference_model}'; teardown "
        f"'{result.teardown}' left {billing} billing."
    )
    print(
        "See its runs, artifacts and report in the Prefect UI:\n"
        f"  PREFECT_HOME={os.environ['PREFECT_HOME']} .venv/bin/prefect server start\n"
        "  then open http://127.0.0.1:4200/runs"
    )
    return 0 if result.verdict == "published" else 1


if __name__ == "__main__":
    raise SystemExit(main())
