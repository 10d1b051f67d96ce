"""Benchmark: a fleet scan scaled out over a process work pool (prints a table and a line).

Starts `prefect server start`, the Together emulator (its own process) and a local S3; deploys
``publish_adapter`` to a process work pool as ``publish-adapter``; starts W process workers, each
running one flow run at a time (W machines); stocks N adapters under one prefix; measures one
publish alone, then one fleet scan that dispatches every adapter through the deployment.
Target: wall time <= 1.2 x (N / W x one publish).

    python bench/fleet.py --adapters 50 --workers 2
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
TARGET = 1.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapters", type=int, default=50, help="adapters under the prefix")
    parser.add_argument("--workers", type=int, default=2, help="process workers (limit 1 each)")
    parser.add_argument("--job-seconds", type=float, default=1.0, help="emulated import time")
    args = parser.parse_args()

    from prefect_together_lora.testing.adapters import write_adapter, zip_folder
    from prefect_together_lora.testing.emulator import run_emulator_process
    from prefect_together_lora.testing.s3 import run_s3_server, s3_client, s3_env

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    processes: list[subprocess.Popen] = []
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server_env = {
        **base_env,
        "PREFECT_HOME": str(work / "server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work}/prefect.db",
        # services the scan does not use, off: the server shares the 2 cores with the workers
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    }
    (work / "server").mkdir()
    try:
        with (
            run_s3_server() as s3_endpoint,
            run_emulator_process(
                "--job-seconds", str(args.job_seconds), "--hf-endpoint", "http://127.0.0.1:9"
            ) as together,
        ):
            env = {
                **base_env,
                **s3_env(s3_endpoint),
                "PREFECT_HOME": str(work / "client"),
                "PREFECT_API_URL": api,
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "TOGETHER_API_KEY": "bench-key",
                "TOGETHER_BASE_URL": together,
                "TOGETHER_LORA_STAGING_URI": "s3://bench-fleet/staging",
                "PYTHONPATH": str(ROOT),
                # workers ask for runs every 10 s by default: a run would wait that long
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "2",
                # a SQLite server on the same 2 cores: keep its writes to states and events
                # (flow-run logs stay on the workers); Postgres is the documented scale path
                "PREFECT_LOGGING_TO_API_ENABLED": "false",
            }
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "server",
                        "start",
                        "--port",
                        str(port),
                        "--no-ui",
                        "--analytics-off",
                    ],
                    env=server_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            wait_for(f"{api}/health", 240)
            s3 = s3_client(s3_endpoint)
            s3.create_bucket(Bucket="bench-fleet")
            for i in range(args.adapters + 1):
                folder = write_adapter(work / f"a{i}", BASE, seed=i)
                key = "single/a.zip" if i == args.adapters else f"fleet/a{i:03d}.zip"
                s3.put_object(
                    Bucket="bench-fleet",
                    Key=key,
                    Body=zip_folder(folder, work / f"a{i}.zip").read_bytes(),
                )
            setup = f"""
from prefect_together_lora.flows import publish_adapter
publish_adapter.from_source(source={str(ROOT)!r},
    entrypoint="flows/publish_adapter.py:publish_adapter").deploy(
    name="publish-adapter", work_pool_name="bench-pool", build=False, push=False,
    print_next_steps=False)
"""
            for command in (
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "work-pool",
                    "create",
                    "bench-pool",
                    "--type",
                    "process",
                ],
                [sys.executable, "-c", setup],
            ):
                subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
            for n in range(args.workers):
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "prefect",
                            "worker",
                            "start",
                            "--pool",
                            "bench-pool",
                            "--limit",
                            "1",
                            "--name",
                            f"bench-worker-{n}",
                        ],
                        env=env,
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            run = f"""
import json, time, sys
from prefect.deployments import run_deployment
from prefect_together_lora.flows import publish_new_adapters
from prefect_together_lora.together.backend import ServingOptions
from prefect_together_lora.options import JobOptions, SmokeOptions
fast = dict(job={{"poll_initial_s": 0.2, "poll_factor": 1.2, "poll_max_s": 1.0}},
            smoke={{"enabled": False}}, serving={{"mode": "none"}})
singles = []
for n in range(3):  # the median of three: one sample is a noisy yardstick
    t = time.monotonic()
    one = run_deployment("publish-adapter/publish-adapter", poll_interval=0.5, parameters=dict(
        source="s3://bench-fleet/single/a.zip", base_model={BASE!r},
        model_name=f"bench-single-{{n}}", **fast))
    singles.append(time.monotonic() - t)
    assert one.state.is_completed(), one.state
single = sorted(singles)[1]
t = time.monotonic()
entries = publish_new_adapters(location="s3://bench-fleet/fleet/", base_model={BASE!r},
    name_prefix="bench", max_concurrent={args.adapters}, serving=ServingOptions(mode="none"),
    job=JobOptions(poll_initial_s=0.2, poll_factor=1.2, poll_max_s=1.0),
    smoke=SmokeOptions(enabled=False))
wall = time.monotonic() - t
print(json.dumps({{"single": single, "wall": wall,
                  "published": sum(e.action == "published" for e in entries)}}))
"""
            result = subprocess.run(
                [sys.executable, "-c", run],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            if result.returncode != 0:
                print(result.stderr[-4000:], file=sys.stderr)
                return 1
            import json

            numbers = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
    ideal = args.adapters / args.workers * numbers["single"]
    ratio = numbers["wall"] / ideal
    met = ratio <= TARGET and numbers["published"] == args.adapters
    print(
        "| adapters | workers | one publish s | fleet wall s | ideal N/W x one s | ratio "
        "| published |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.adapters} | {args.workers} | {numbers['single']:.2f} | {numbers['wall']:.2f} "
        f"| {ideal:.2f} | {ratio:.2f} | {numbers['published']} |"
    )
    print(
        f"fleet: adapters={args.adapters} workers={args.workers} one_publish_s="
        f"{numbers['single']:.2f} wall_s={numbers['wall']:.2f} ratio={ratio:.2f} "
        f"target<={TARGET} met={'yes' if met else 'no'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
