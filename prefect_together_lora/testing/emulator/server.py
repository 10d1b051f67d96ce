"""Run the emulator: in a background thread for tests (``run_emulator``) or as a CLI server."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from prefect_together_lora.testing.emulator.app import create_app
from prefect_together_lora.testing.emulator.config import EmulatorConfig


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def serve_app_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a daemon thread; yields ``http://host:port``."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="emulator-http"
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local server did not start")
        time.sleep(0.01)
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def run_emulator(
    *, host: str = "127.0.0.1", port: int = 0, state: str | None = None, **options: Any
) -> Iterator[str]:
    """Start a Together API emulator; yields its base URL (use it as ``TOGETHER_BASE_URL``).

    ``options`` are :class:`EmulatorConfig` fields (``job_seconds``, ``hf_endpoint``,
    ``account``, ``api_keys``, ``cold_start_calls``, ...). ``state`` is a SQLite path that
    keeps models and jobs across restarts.
    """
    app = create_app(EmulatorConfig(**options), state_path=state)
    with serve_app_in_thread(app, host, port) as url:
        yield url


@contextlib.contextmanager
def run_emulator_process(
    *args: str, host: str = "127.0.0.1", startup_timeout_s: float = 30.0
) -> Iterator[str]:
    """Start ``together-lora emulator`` as its own process (as a user would, and so it does
    not share the caller's GIL); yields its base URL. ``args`` are the command's options."""
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect_together_lora.cli",
            "emulator",
            "--host",
            host,
            "--port",
            str(port),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                if httpx.get(f"{url}/_emulator/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the emulator process did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """``together-lora emulator``: serve the emulator until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="together-lora emulator", description="Serve a local Together API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--hf-endpoint", default=None, help="Hub endpoint for Hub sources.")
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--state", default=None, help="SQLite file to keep state across restarts.")
    parser.add_argument("--account", default="devuser", help="v1 namespace of uploaded names")
    parser.add_argument("--project-id", default="proj_emulator0001", help="v2 project id")
    parser.add_argument(
        "--project-slug", default="acme-research", help="v2 project slug (<slug>/<name>)"
    )
    parser.add_argument(
        "--deploy-seconds", type=float, default=5.0, help="v2 deployment PROVISIONING time"
    )
    parser.add_argument(
        "--legacy-serverless",
        action="store_true",
        help="v1 uploaded adapters answer serverless (Together's old behaviour)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        dest="api_keys",
        help="Accepted API key (repeatable); default: any non-empty key.",
    )
    parser.add_argument("--base-models", default="all", choices=["A", "B", "C", "all"])
    parser.add_argument("--cold-start-calls", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--rate-limit-rps", type=float, default=None)
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        account=args.account,
        project_id=args.project_id,
        project_slug=args.project_slug,
        deploy_seconds=args.deploy_seconds,
        dedicated_only=not args.legacy_serverless,
        api_keys=args.api_keys,
        hf_endpoint=args.hf_endpoint,
        job_seconds=args.job_seconds,
        base_models=args.base_models,
        cold_start_calls=args.cold_start_calls,
        latency_ms=args.latency_ms,
        rate_limit_rps=args.rate_limit_rps,
    )
    logging.basicConfig(level=logging.INFO)
    app = create_app(config, state_path=args.state)
    print(
        f"Together emulator (v1, v2, /v3/whoami, inference) on http://{args.host}:{args.port}: "
        f"set TOGETHER_BASE_URL=http://{args.host}:{args.port} "
        f"(project {args.project_id}, slug {args.project_slug})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
