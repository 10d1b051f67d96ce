"""Reliability suite, faults: both backends (v1, v2) against the emulator's fault injection and
real processes. A storm, a burst, a reset, a lost answer, a stuck or failed import, a restart,
a killed flow, ten racing publishes, an interrupted teardown: each ends as expected, with no
duplicate import, no hang and nothing left billing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from prefect_together_lora.errors import JobTimedOut, RateLimitError, ServingFailed
from prefect_together_lora.options import JobOptions
from prefect_together_lora.polling import wait_for_import
from prefect_together_lora.retry import RetryPolicy
from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from prefect_together_lora.together import make_backend
from prefect_together_lora.together.backend import AdapterSpec, ServingOptions
from tests.helpers import BASE_8B, put_file, raw_presign

# v1 here is an account that still has serverless LoRA inference (the legacy setting)
pytestmark = [pytest.mark.reliability, pytest.mark.together_emulator(dedicated_only=False)]

APIS = ["v1", "v2"]
FAST = JobOptions(poll_initial_s=0.05, poll_max_s=0.2, max_wait_s=60)
SERVE = ServingOptions(poll_initial_s=0.05, poll_max_s=0.2, ready_timeout_s=20)
QUICK_RETRY = RetryPolicy(initial_delay_s=0.01, max_delay_s=0.05)
LIST = {"v1": "/v1/models", "v2": r"/v2/projects/[^/]+/models"}
CREATE = {"v1": "/v1/models", "v2": r"/v2/projects/[^/]+/models/uploads"}


def presigned(s3_bucket: Any, tmp_path: Path, key: str) -> str:
    folder = write_adapter(tmp_path / key, BASE_8B, modules=("q_proj",))
    archive = zip_folder(folder, tmp_path / f"{key}.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, f"{key}.zip", archive)
    return raw_presign(s3_bucket.client, s3_bucket.bucket, f"{key}.zip")


def spec(name: str, source: str) -> AdapterSpec:
    return AdapterSpec(name=name, source_url=SecretStr(source), base_model=BASE_8B)


def creates(emulator: Any, api: str) -> int:
    import re

    return sum(
        1 for r in emulator.admin.requests(method="POST") if re.fullmatch(CREATE[api], r["path"])
    )


def list_models(backend: Any) -> Any:
    return backend.client.list_models()


# --- transport faults -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("api", APIS)
def test_server_error_burst_is_retried(api: str, status: int, together_emulator: Any, case: Any):
    case.expect(f"3x {status}, then the answer")
    together_emulator.admin.fault(LIST[api], method="GET", status=status, times=3)
    with together_emulator.backend(api, retry=QUICK_RETRY) as backend:
        list_models(backend)
        seen = backend.client.status_counts[status]
    case.saw(f"{seen}x {status}, then 200")
    assert seen == 3


@pytest.mark.parametrize("api", APIS)
def test_429_storm_with_retry_after_zero_backs_off(api: str, together_emulator: Any, case: Any):
    case.expect("4x 429 (Retry-After: 0) waited out with backoff")
    together_emulator.admin.fault(
        LIST[api], method="GET", status=429, headers={"Retry-After": "0"}, times=4
    )
    policy = RetryPolicy(initial_delay_s=0.05, max_delay_s=0.2)
    started = time.monotonic()
    with together_emulator.backend(api, retry=policy) as backend:
        list_models(backend)
        seen = backend.client.status_counts[429]
    waited = time.monotonic() - started
    case.saw(f"{seen}x 429, answered after {waited:.2f}s")
    assert seen == 4
    assert waited > 0.0  # a backoff happened: "0" is not "retry at once, four times"


@pytest.mark.parametrize("api", APIS)
def test_endless_429_ends_in_a_typed_error(api: str, together_emulator: Any, case: Any):
    case.expect("RateLimitError after the retry budget")
    together_emulator.admin.fault(LIST[api], method="GET", status=429, times=100)
    with (
        together_emulator.backend(api, retry=QUICK_RETRY) as backend,
        pytest.raises(RateLimitError) as raised,
    ):
        list_models(backend)
    case.saw(f"{type(raised.value).__name__}: {raised.value.message[:60]}")


@pytest.mark.parametrize("api", APIS)
def test_connection_reset_mid_response_is_retried(api: str, together_emulator: Any, case: Any):
    case.expect("reset mid-response, retried, answered")
    together_emulator.admin.fault(LIST[api], method="GET", drop="after", times=2)
    with together_emulator.backend(api, retry=QUICK_RETRY) as backend:
        models = list_models(backend)
    dropped = [r for r in together_emulator.admin.requests() if r["status"] == "dropped"]
    case.saw(f"{len(dropped)} dropped, then {len(models)} models")
    assert len(dropped) == 2


# --- imports: lost, stuck, restarted, killed, raced -----------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_lost_create_answer_then_retry_gives_one_import(
    api: str, together_emulator: Any, s3_bucket: Any, tmp_path: Path, case: Any
):
    case.expect("1 import: the lost one, followed")
    source = presigned(s3_bucket, tmp_path, "lost")
    together_emulator.admin.fault(CREATE[api], method="POST", drop="after")
    with together_emulator.backend(api, retry=QUICK_RETRY) as backend:
        first = backend.import_adapter(spec("lost", source))
        again = backend.import_adapter(spec("lost", source))
        wait_for_import(backend, first, FAST)
    case.saw(
        f"{creates(together_emulator, api)} create(s); same job: {first.job_id == again.job_id}"
    )
    assert first.job_id == again.job_id
    assert len(_imports(together_emulator, api)) == 1  # every later POST was a known duplicate


@pytest.mark.together_emulator(job_seconds=60)
@pytest.mark.parametrize("api", APIS)
def test_import_stuck_past_max_wait_says_it_still_exists(
    api: str, together_emulator: Any, s3_bucket: Any, tmp_path: Path, case: Any
):
    case.expect("JobTimedOut naming the job, which still exists")
    with together_emulator.backend(api) as backend:
        handle = backend.import_adapter(spec("stuck", presigned(s3_bucket, tmp_path, "stuck")))
        with pytest.raises(JobTimedOut) as raised:
            wait_for_import(backend, handle, FAST.model_copy(update={"max_wait_s": 0.5}))
    case.saw(raised.value.message[:60])
    assert raised.value.job_id == handle.job_id and handle.job_id in str(raised.value)


def _imports(emulator: Any, api: str) -> list[Any]:
    if api == "v1":
        with emulator.client() as client:
            return list(client.list_jobs())
    with emulator.v2_client() as client:
        return list(client.list_uploads())


@pytest.mark.parametrize("api", APIS)
def test_emulator_restart_mid_import_keeps_the_import(
    api: str, s3_bucket: Any, tmp_path: Path, case: Any
):
    from prefect_together_lora.testing.emulator import run_emulator

    case.expect("same import completes after the restart")
    state = str(tmp_path / "together.db")
    source = presigned(s3_bucket, tmp_path, "restart")
    options = {"state": state, "job_seconds": 1.5, "dedicated_only": False}
    with run_emulator(**options) as url, make_backend(api, "k", url) as backend:  # type: ignore[arg-type]
        handle = backend.import_adapter(spec("restart", source))
    with run_emulator(**options) as url, make_backend(api, "k", url) as backend:  # type: ignore[arg-type]
        timeline = wait_for_import(backend, handle, FAST)
        again = backend.import_adapter(spec("restart", source))
    case.saw(f"{timeline[-1].kind or timeline[-1].status}; re-import reused: {again.reused}")
    assert again.job_id == handle.job_id


@pytest.mark.parametrize("api", APIS)
def test_ten_identical_publishes_at_once_share_one_import(
    api: str, together_emulator: Any, s3_bucket: Any, tmp_path: Path, case: Any
):
    case.expect("10 racing imports -> 1 import, all end with it")
    source = presigned(s3_bucket, tmp_path, "race")
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def publish() -> None:
        try:
            with together_emulator.backend(api) as backend:
                start.wait()
                handle = backend.import_adapter(spec("race", source))
                wait_for_import(backend, handle, FAST)
                results.append(handle.job_id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    imports = _imports(together_emulator, api)
    case.saw(f"{len(imports)} import(s), {len(set(results))} job id(s), {len(errors)} error(s)")
    assert not errors, errors
    assert len(results) == 10 and len(set(results)) == 1 and len(imports) == 1


def test_a_racer_that_finds_the_record_before_its_upload_waits_for_it(
    together_emulator: Any, s3_bucket: Any, tmp_path: Path, case: Any
):
    """The race the ten-publish case can miss: run A has made the record but not yet posted its
    upload when run B looks (B's create answered 409). B must follow A's upload."""
    case.expect("B follows A's upload: 1 import")
    source = presigned(s3_bucket, tmp_path, "ab")
    with together_emulator.backend("v2") as a, together_emulator.backend("v2") as b:
        base_id = a.resolve_base_model(BASE_8B)
        record = a.client.create_model("ab", base_id)
        timer = threading.Timer(1.0, a.client.create_upload, (record.id, source))
        timer.start()
        try:
            handle = b.import_adapter(spec("ab", source))
        finally:
            timer.join()
        uploads = b.client.list_uploads()
    case.saw(f"{len(uploads)} import(s); B reused A's: {handle.reused}")
    assert len(uploads) == 1 and handle.job_id == uploads[0].id and handle.reused


CHILD = """
import sys
from prefect_together_lora.credentials import TogetherCredentials
from prefect_together_lora.flows import publish_adapter
from prefect_together_lora.options import JobOptions, SmokeOptions
from prefect_together_lora.together.backend import ServingOptions
api, url, key, source, name, base = sys.argv[1:7]
publish_adapter(
    source=source, base_model=base, model_name=name, api=api,
    credentials=TogetherCredentials(api_key=key, base_url=url),
    job=JobOptions(poll_initial_s=0.1, poll_max_s=0.3, max_wait_s=120),
    serving=ServingOptions(mode="none"),
    smoke=SmokeOptions(prompts=["Say hello."], retry_interval_s=0.05, ready_timeout_s=20),
)
"""


@pytest.mark.together_emulator(job_seconds=8)
@pytest.mark.parametrize("api", APIS)
def test_flow_killed_during_await_job_resumes_the_same_import(
    api: str, prefect_harness: Any, together_emulator: Any, s3_bucket: Any, tmp_path: Path, case
):
    from prefect.settings import PREFECT_API_URL

    from prefect_together_lora.flows import publish_adapter
    from prefect_together_lora.options import SmokeOptions

    case.expect("killed mid-wait; re-run follows the same import")
    folder = write_adapter(tmp_path / "k", BASE_8B, modules=("q_proj",))
    put_file(s3_bucket.client, s3_bucket.bucket, "k.zip", zip_folder(folder, tmp_path / "k.zip"))
    source = f"s3://{s3_bucket.bucket}/k.zip"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            api,
            together_emulator.base_url,
            together_emulator.api_key,
            source,
            "killed",
            BASE_8B,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while creates(together_emulator, api) == 0:
            assert child.poll() is None, (
                child.stderr.read().decode()[-3000:] if child.stderr else ""
            )
            assert time.monotonic() < deadline, "the child never created its import"
            time.sleep(0.1)
        time.sleep(1.0)  # well inside await_job
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    first = _imports(together_emulator, api)
    assert len(first) == 1
    state = publish_adapter(
        source=source,
        base_model=BASE_8B,
        model_name="killed",
        api=api,
        credentials=together_emulator.credentials(),
        job=FAST,
        serving=ServingOptions(mode="none"),
        smoke=SmokeOptions(prompts=["Say hello."], retry_interval_s=0.05, ready_timeout_s=20),
        return_state=True,
    )
    after = _imports(together_emulator, api)
    made = creates(together_emulator, api)
    case.saw(f"re-run {state.type.value}; {len(after)} import(s), {made} create(s)")
    assert state.is_completed(), state.message
    assert len(after) == 1 and creates(together_emulator, api) == 1


# --- serving: an interrupted teardown is finished by running it again ----------------------


def test_interrupted_teardown_is_finished_by_a_rerun(
    together_emulator: Any, s3_bucket: Any, tmp_path: Path, case: Any
):
    case.expect("partial teardown says what is left; re-run removes it")
    with together_emulator.backend("v2", retry=QUICK_RETRY) as backend:
        handle = backend.import_adapter(spec("half", presigned(s3_bucket, tmp_path, "half")))
        wait_for_import(backend, handle, FAST)
        report = backend.serve(handle, SERVE)
        together_emulator.admin.fault(
            r"/v2/projects/[^/]+/endpoints/[^/]+", method="DELETE", status=500, times=100
        )
        with pytest.raises(ServingFailed, match="Teardown incomplete") as raised:
            backend.teardown(handle, report.resources, "delete")
        left = {r.kind: r.state for r in raised.value.resources}
        assert not any(r.bills and r.state == "live" for r in raised.value.resources)
        together_emulator.admin.clear_faults()
        final = backend.teardown(handle, raised.value.resources, "delete")
        endpoints = backend.client.list_endpoints()
    case.saw(f"left {left}; then {sorted({r.state or '' for r in final})}")
    assert endpoints == []
    assert all(r.state in ("deleted", "detached") for r in final if r.kind != "model")
