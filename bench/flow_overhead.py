"""Benchmark: what ``publish_adapter`` adds to Together's own time, on a running Prefect server.

Starts ``prefect server start``, the Together emulator (its own process, imports that take
``--job-seconds``) and a local S3. A client process runs the flow on the default v2 backend with
``serving=none`` (register → remote upload → validated revision): once to warm up, then for a
new adapter (overhead = wall time - job time, the job's time taken from Together's own
timestamps: the upload's creation to its last event), then again for the same adapter (a
re-run: the validation is cached and the upload is found, nothing is sent again).

Targets: overhead <= 2 s; re-run <= 1.5 s.

    python bench/flow_overhead.py [--job-seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
CLIENT = """
import json, sys, time
from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.together.backend import ServingOptions

def publish(source, name):
    started = time.perf_counter()
    state = publish_adapter(
        source=source, base_model=sys.argv[3], model_name=name,
        serving=ServingOptions(mode="none"), return_state=True,
    )
    assert state.is_completed(), state.message
    return time.perf_counter() - started

def job_seconds(name):
    # Together's own time for the import: upload created -> its last event (validated)
    import os
    from prefect_together_lora.together.v2_client import TogetherV2Client
    with TogetherV2Client(os.environ["TOGETHER_API_KEY"], os.environ["TOGETHER_BASE_URL"]) as c:
        record = next(m for m in c.list_models() if m.name.endswith("/" + name))
        upload = next(u for u in c.list_uploads() if u.model_id == record.id)
        events, _ = c.upload_events(upload.id)
        return (max(e.created_at for e in events) - upload.created_at).total_seconds()

warm = publish(sys.argv[1], "warm-up")
first = publish(sys.argv[2], "measured")
again = publish(sys.argv[2], "measured")
print(json.dumps({"warm_up": warm, "first": first, "rerun": again, "job": job_seconds("measured")}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=float, default=5.0)
    args = parser.parse_args()

    from bench.fleet import free_port, wait_for
    from prefect_together_lora.testing.adapters import write_adapter, zip_folder
    from prefect_together_lora.testing.emulator import run_emulator_process
    from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env

    work = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port), "--no-ui"],
        env={
            **base_env,
            "PREFECT_HOME": str(work / "server"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work}/prefect.db",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with (
            run_s3_server() as s3_endpoint,
            run_emulator_process(
                "--job-seconds", str(args.job_seconds), "--hf-endpoint", "http://127.0.0.1:9"
            ) as together,
        ):
            wait_for(f"{api}/health", 240)
            s3 = s3_client(s3_endpoint)
            s3.create_bucket(Bucket="bench-flow")
            sources = []
            for i in range(2):
                folder = write_adapter(work / f"a{i}", BASE, seed=i)
                archive = zip_folder(folder, work / f"a{i}.zip")
                s3.upload_file(str(archive), "bench-flow", f"a{i}.zip")
                sources.append(f"s3://bench-flow/a{i}.zip")
            done = subprocess.run(
                [sys.executable, "-c", CLIENT, *sources, BASE],
                env={
                    **base_env,
                    **s3_env(s3_endpoint),
                    "PREFECT_HOME": str(work / "client"),
                    "PREFECT_API_URL": api,
                    "PREFECT_LOGGING_LEVEL": "WARNING",
                    "TOGETHER_API_KEY": "bench-key",
                    "TOGETHER_BASE_URL": together,
                },
                capture_output=True,
                text=True,
                check=False,
            )
    finally:
        server.terminate()
        server.wait(30)
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        return 1
    times = json.loads(done.stdout.strip().splitlines()[-1])
    job = times["job"]
    overhead = times["first"] - job
    ok = overhead <= 2.0 and times["rerun"] <= 1.5
    print(f"{'run':<22} {'wall (s)':>9} {'job (s)':>8} {'overhead (s)':>13} {'target':>8}")
    print(f"{'warm-up (not judged)':<22} {times['warm_up']:>9.2f}")
    print(f"{'new adapter':<22} {times['first']:>9.2f} {job:>8.2f} {overhead:>13.2f} {'<= 2.0':>8}")
    print(f"{'re-run, same adapter':<22} {times['rerun']:>9.2f} {0:>8.1f} {'':>13} {'<= 1.5':>8}")
    print(
        f"flow_overhead: job_s={job:.2f} wall_s={times['first']:.2f} "
        f"overhead_s={overhead:.2f} rerun_s={times['rerun']:.2f} ok={ok}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
