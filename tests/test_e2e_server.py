"""End to end on a real Prefect server: ``prefect server start`` (SQLite, temporary home, free
port), ``flows/serve.py`` serving the deployments, and the emulator + strict local S3.

1. ``prefect event emit together.lora.training.completed`` → the trigger runs publish_adapter
   with the event's values.
2. A Prefect training flow ``train-lora`` completes → the chained trigger publishes its output.
3. The scheduler starts the fleet scan: two new adapters published, one already there skipped.
Everything started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from prefect_together_lora.fleet import discover
from prefect_together_lora.options import JobOptions
from prefect_together_lora.polling import wait_for_import
from prefect_together_lora.testing.adapters import tar_folder, write_adapter, zip_folder
from prefect_together_lora.testing.emulator import EmulatorAdmin, run_emulator
from prefect_together_lora.together import make_backend
from prefect_together_lora.together.backend import AdapterSpec
from prefect_together_lora.together.v2_client import TogetherV2Client
from tests.helpers import BASE_8B, put_file, raw_presign

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = [pytest.mark.e2e, pytest.mark.together_emulator(dedicated_only=False)]
ROOT = Path(__file__).parents[1]
KEY = "e2e-together-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, local_s3) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("e2e")
    bucket = "e2e-adapters"
    local_s3.client.create_bucket(Bucket=bucket)
    with run_emulator(job_seconds=0.5, api_keys=[KEY], hf_endpoint="http://127.0.0.1:9") as url:
        admin = EmulatorAdmin(url)
        # the fleet prefix: three adapters, one of them published before
        for i, kind in enumerate(("zip", "tar.gz", "zip")):
            folder = write_adapter(work / f"fleet-{i}", BASE_8B, seed=10 + i)
            archive = (
                zip_folder(folder, work / f"f{i}.zip")
                if kind == "zip"
                else tar_folder(folder, work / f"f{i}.tar.gz")
            )
            put_file(local_s3.client, bucket, f"fleet/run-{i}.{kind}", archive)
        env = {**os.environ, **local_s3.env}
        old = {k: os.environ.get(k) for k in local_s3.env}
        os.environ.update(local_s3.env)
        try:
            earlier = discover(f"s3://{bucket}/fleet/", "fleet")[0]
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        # published before: the v2 record of the first adapter, imported and validated
        earlier_url = raw_presign(local_s3.client, bucket, "fleet/run-0.zip")
        with make_backend("v2", KEY, url) as backend:
            handle = backend.import_adapter(
                AdapterSpec(
                    name=earlier.model_name,
                    source_url=SecretStr(earlier_url),
                    base_model=BASE_8B,
                )
            )
            wait_for_import(backend, handle, JobOptions(poll_initial_s=0.1, max_wait_s=60))

        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        server_home = work / "server-home"
        server_env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
        server_env.update(
            {
                "PREFECT_HOME": str(server_home),
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{server_home}/prefect.db",
                "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                # SQLite on 2 busy cores: wait for the lock rather than answer 503
                "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
                "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
            }
        )
        server_home.mkdir()
        server_log = (work / "server.log").open("w")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ui",
                "--analytics-off",
            ],
            env=server_env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        serve = None
        try:
            wait_until(lambda: _ok(f"{api}/health"), 240, "prefect server start")
            client_env = {
                **server_env,
                "PREFECT_HOME": str(work / "client-home"),
                "PREFECT_API_URL": api,
                "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                "TOGETHER_API_KEY": KEY,
                "TOGETHER_BASE_URL": url,
                "TOGETHER_LORA_STAGING_URI": f"s3://{bucket}/staging",
                "TOGETHER_LORA_FLEET_LOCATION": f"s3://{bucket}/fleet/",
                "TOGETHER_LORA_FLEET_BASE_MODEL": BASE_8B,
                "TOGETHER_LORA_FLEET_PREFIX": "fleet",
                "TOGETHER_LORA_FLEET_INTERVAL_S": "15",
                "HF_ENDPOINT": "http://127.0.0.1:9",
                "PYTHONPATH": str(ROOT),
            }
            # the README's post-training section, from a clean clone: python flows/serve.py
            clone = work / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
            serve_command = next(
                c for c in _readme_block("## Run it after your training job") if "serve.py" in c
            )
            assert serve_command.split("#")[0].split() == ["python", "flows/serve.py"]
            serve_log = (work / "serve.log").open("w")
            serve = subprocess.Popen(
                [sys.executable, "flows/serve.py"],
                env={**client_env, "PYTHONPATH": str(clone)},
                stdout=serve_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=clone,
            )
            wait_until(
                lambda: len(_post(api, "/deployments/filter", {})) >= 2,
                120,
                "the served deployments",
            )
            yield {
                "api": api,
                "env": client_env,
                "admin": admin,
                "bucket": bucket,
                "s3": local_s3.client,
                "work": work,
                "earlier": earlier.model_name,
                "server": server,
                "serve": serve,
            }
        finally:
            if serve is not None:
                stop(serve, signal.SIGINT)
            stop(server)
            server_log.close()
            admin.close()
        assert server.poll() is not None and (serve is None or serve.poll() is not None)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _api(method: str, url: str, body: dict[str, Any]) -> Any:
    """A call to the Prefect server, waiting out a busy SQLite server (503) as Prefect's own
    client does."""
    for attempt in range(8):
        try:
            response = httpx.request(method, url, json=body, timeout=30)
        except httpx.TransportError:
            if attempt == 7:
                raise
        else:
            if response.status_code not in (429, 502, 503) or attempt == 7:
                response.raise_for_status()
                return response.json() if response.content else None
        time.sleep(min(8.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    return _api("POST", f"{api}{path}", body)


def flow_runs(api: str, deployment: str) -> list[dict[str, Any]]:
    deployments = {d["name"]: d["id"] for d in _post(api, "/deployments/filter", {})}
    return _post(
        api,
        "/flow_runs/filter",
        {"flow_runs": {"deployment_id": {"any_": [deployments[deployment]]}}},
    )


def completed(api: str, deployment: str, where) -> dict[str, Any] | None:
    """The earliest completed run matching ``where`` (a failed one fails the test)."""
    runs = sorted(flow_runs(api, deployment), key=lambda r: r["expected_start_time"] or "")
    for run in runs:
        if (run["state_type"] == "FAILED" or run["state_type"] == "CRASHED") and where(run):
            raise AssertionError(f"{deployment} run failed: {run['state']}")
        if run["state_type"] == "COMPLETED" and where(run):
            return run
    return None


def test_training_event_triggers_a_publish(stack) -> None:
    folder = write_adapter(stack["work"] / "event-adapter", BASE_8B, seed=1)
    archive = zip_folder(folder, stack["work"] / "event.zip")
    put_file(stack["s3"], stack["bucket"], "runs/7/adapter.zip", archive)
    payload = {
        "source": f"s3://{stack['bucket']}/runs/7/adapter.zip",
        "base_model": BASE_8B,
        "model_name": "e2e-event-lora",
        "eval_set": None,
        "description": "from event",
    }
    _emit(stack, "e2e-event-lora", payload)
    run = wait_until(
        lambda: completed(
            stack["api"],
            "publish-adapter",
            lambda r: r["parameters"].get("model_name") == "e2e-event-lora",
        ),
        240,
        "the triggered publish run",
    )
    assert run["parameters"]["source"] == payload["source"]
    assert run["parameters"]["evaluation"] == {"eval_set": None}  # typed: null stays null
    models = _together_models(stack)
    assert models["acme-research/e2e-event-lora"] == "REVISION_VALIDATION_STATUS_SUCCESS"


def test_training_flow_completion_chains_a_publish(stack) -> None:
    """One training run that fires both triggers (its announcement event and its completion)
    gives one publish: the later triggered run defers to the earlier one."""
    output = stack["work"] / "trained"
    code = (
        "from flows.train_and_publish import train_lora_flow; "
        f"train_lora_flow(output_dir={str(output)!r}, model_name='e2e-chained-lora', "
        "announce=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        env=stack["env"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )

    def both_finished() -> list[dict[str, Any]] | None:
        runs = [
            r
            for r in flow_runs(stack["api"], "publish-adapter")
            if r["parameters"].get("model_name") == "e2e-chained-lora"
            and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")
        ]
        return runs if len(runs) == 2 else None

    runs = wait_until(both_finished, 240, "both triggered publish runs")
    assert {r["state_type"] for r in runs} == {"COMPLETED"}, [r["state"] for r in runs]
    verdicts = sorted(
        "duplicate" if "LoRA adapter publish: duplicate" in _report(stack["api"], r) else "work"
        for r in runs
    )
    assert verdicts == ["duplicate", "work"]
    assert {r["parameters"]["source"].rstrip("/") for r in runs} == {str(output)}
    models = _together_models(stack)
    assert models["acme-research/e2e-chained-lora"] == "REVISION_VALIDATION_STATUS_SUCCESS"


def test_scheduled_fleet_scan_publishes_only_new_adapters(stack) -> None:
    run = wait_until(
        lambda: completed(stack["api"], "fleet-scan", lambda r: r["auto_scheduled"]),
        300,
        "a scheduled fleet-scan run",
    )
    artifacts = _post(
        stack["api"], "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    table = next(
        json.loads(a["data"])
        for a in artifacts
        if (a.get("key") or "").startswith("together-lora-fleet-")
    )
    actions = {e["model_name"]: e["action"] for e in table}
    assert sorted(actions.values()) == ["published", "published", "skipped"], table
    assert actions[stack["earlier"]] == "skipped"  # the one published before
    models = _together_models(stack)
    fleet = {n: status for n, status in models.items() if n.startswith("acme-research/fleet-")}
    assert len(fleet) == 3 and set(fleet.values()) == {"REVISION_VALIDATION_STATUS_SUCCESS"}
    uploads = [
        r
        for r in stack["admin"].requests(method="POST")
        if r["path"].endswith("/models/uploads") and r["status"] == 200
    ]
    assert len(uploads) == len(models)  # nothing uploaded twice
    # published through the publish-adapter deployment (run_deployment): its workers scale out
    dispatched = [
        r
        for r in flow_runs(stack["api"], "publish-adapter")
        if str(r["parameters"].get("model_name", "")).startswith("fleet-")
    ]
    assert len({r["parameters"]["model_name"] for r in dispatched}) == 2


def _together_models(stack) -> dict[str, str]:
    """v2 model name → its newest revision's validation status."""
    with TogetherV2Client(KEY, stack["env"]["TOGETHER_BASE_URL"]) as client:
        return {
            m.name: (revisions[0].validation_status or "") if revisions else "no revision"
            for m in client.list_models()
            for revisions in [client.list_revisions(m.id)]
        }


def _emit(stack, model_name: str, payload: dict[str, Any]) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "event",
            "emit",
            "together.lora.training.completed",
            "--resource-id",
            f"together.lora.training.{model_name}",
            "--payload",
            json.dumps(payload),
        ],
        env=stack["env"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def finished(api: str, deployment: str, model_name: str) -> dict[str, Any] | None:
    for run in flow_runs(api, deployment):
        terminal = run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        if terminal and run["parameters"].get("model_name") == model_name:
            return run
    return None


def _report(api: str, run: dict[str, Any]) -> str:
    artifacts = _post(
        api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    return next(
        a["data"] for a in artifacts if (a.get("key") or "").startswith("together-lora-report-")
    )


def test_deployment_gate_survives_a_trigger_and_optional_keys_may_be_omitted(stack) -> None:
    """A gate set on the deployment (as in the UI) is applied when the event trigger passes
    only ``evaluation.eval_set``; an event without the optional keys still creates a run."""
    api = stack["api"]
    deployment = next(
        d for d in _post(api, "/deployments/filter", {}) if d["name"] == "publish-adapter"
    )
    original = deployment["parameters"]
    gated = {**original, "evaluation": {"min_score": 0.99, "default_metric": "exact_match"}}
    _api("PATCH", f"{api}/deployments/{deployment['id']}", {"parameters": gated})
    eval_path = stack["work"] / "gate.jsonl"
    eval_path.write_text(json.dumps({"id": "g1", "prompt": "Hi?", "expected": "zzz-never"}) + "\n")
    try:
        for name in ("e2e-gated-lora", "e2e-minimal-lora"):
            folder = write_adapter(stack["work"] / name, BASE_8B, seed=len(name))
            put_file(
                stack["s3"],
                stack["bucket"],
                f"{name}.zip",
                zip_folder(folder, stack["work"] / f"{name}.zip"),
            )
        source = f"s3://{stack['bucket']}/e2e-gated-lora.zip"
        _emit(
            stack,
            "e2e-gated-lora",
            {
                "source": source,
                "base_model": BASE_8B,
                "model_name": "e2e-gated-lora",
                "eval_set": str(eval_path),
            },
        )
        # only the required keys: no description, no eval_set
        _emit(
            stack,
            "e2e-minimal-lora",
            {
                "source": f"s3://{stack['bucket']}/e2e-minimal-lora.zip",
                "base_model": BASE_8B,
                "model_name": "e2e-minimal-lora",
            },
        )
        gated_run = wait_until(
            lambda: finished(api, "publish-adapter", "e2e-gated-lora"), 240, "the gated run"
        )
        assert gated_run["state_type"] == "FAILED", gated_run["state"]
        assert gated_run["parameters"]["evaluation"]["eval_set"] == str(eval_path)
        report = _report(api, gated_run)
        assert "adapter mean score >= 0.99" in report and "Failed at `evaluate`" in report
        assert "Nothing this run created is billing" in report
        minimal = wait_until(
            lambda: finished(api, "publish-adapter", "e2e-minimal-lora"), 240, "the minimal run"
        )
        assert minimal["state_type"] == "COMPLETED", minimal["state"]
        assert "but no eval set, so it is not evaluated" in _report(api, minimal)
    finally:
        _api("PATCH", f"{api}/deployments/{deployment['id']}", {"parameters": original})


def _readme_block(heading: str) -> list[str]:
    """The shell commands of the first ```bash block under ``heading`` in the README."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    block = section[
        section.index("```bash") + len("```bash") : section.index(
            "```", section.index("```bash") + 7
        )
    ]
    commands, current = [], ""
    for line in block.strip().splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def test_work_pool_route_runs_from_a_clean_clone(stack, tmp_path) -> None:
    """The README's work-pool section, verbatim, from a fresh clone, on a process worker."""
    import shlex

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {**stack["env"], "PREFECT_HOME": str(tmp_path / "home")}
    setup = _readme_block("### On a work pool")
    assert setup[0].startswith("prefect work-pool create") and setup[-1].startswith(
        "prefect worker start"
    )
    for command in setup[:-1]:
        result = subprocess.run(
            [sys.executable, "-m", *shlex.split(command)],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    worker = subprocess.Popen(
        [sys.executable, "-m", *shlex.split(setup[-1])],
        cwd=clone,
        env=env,
        stdout=(tmp_path / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployments = {d["name"]: d for d in _post(stack["api"], "/deployments/filter", {})}
        assert deployments["publish-adapter-worker"]["work_pool_name"] == "together-lora-pool"
        assert deployments["publish-adapter"]["work_pool_name"] is None  # still the served one
        folder = write_adapter(tmp_path / "pool-adapter", BASE_8B, seed=77)
        put_file(
            stack["s3"], stack["bucket"], "pool/adapter.zip", zip_folder(folder, tmp_path / "p.zip")
        )
        params = {
            "source": f"s3://{stack['bucket']}/pool/adapter.zip",
            "base_model": BASE_8B,
            "model_name": "e2e-pool-lora",
        }
        run_command = _readme_block("Start a run from the UI, or:")[0]
        assert run_command.startswith(
            "prefect deployment run publish-adapter/publish-adapter-worker"
        )
        command = shlex.split(run_command)
        command[command.index("--params") + 1] = json.dumps(params)
        started = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr[-2000:]
        run = wait_until(
            lambda: finished(stack["api"], "publish-adapter-worker", "e2e-pool-lora"),
            300,
            "the work-pool publish run",
        )
        assert run["state_type"] == "COMPLETED", (
            run["state"],
            (tmp_path / "worker.log").read_text()[-3000:],
        )
        models = _together_models(stack)
        assert models["acme-research/e2e-pool-lora"] == "REVISION_VALIDATION_STATUS_SUCCESS"
        assert not flow_runs(stack["api"], "fleet-scan-worker")  # its schedule is inactive
    finally:
        stop(worker, signal.SIGINT)
