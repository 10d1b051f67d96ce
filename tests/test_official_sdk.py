"""The official `together` SDK (2.x, dev-only dependency) works against the emulator exactly
as against Together: upload from a presigned URL, poll the job, chat with the adapter."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from tests.helpers import BASE_8B, put_file, raw_presign

together = pytest.importorskip("together")

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)


@pytest.fixture(params=["in-process", "command-line"])
def emulator_url(request, together_emulator) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of the emulator the test's fixture runs, or of one started the way
    a user would: the ``together-lora emulator`` command in its own process."""
    if request.param == "in-process":
        yield together_emulator.base_url, together_emulator.api_key
        return
    from prefect_together_lora.testing.emulator import run_emulator_process

    with run_emulator_process(
        "--job-seconds",
        "0.3",
        "--api-key",
        "cli-key",
        "--hf-endpoint",
        "http://127.0.0.1:9",
        "--legacy-serverless",
    ) as url:
        yield url, "cli-key"


def test_sdk_upload_poll_and_chat(emulator_url, s3_bucket, tmp_path) -> None:
    base_url, api_key = emulator_url
    archive = zip_folder(write_adapter(tmp_path / "a", BASE_8B), tmp_path / "a.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, "a.zip", archive)
    url = raw_presign(s3_bucket.client, s3_bucket.bucket, "a.zip")

    client = together.Together(api_key=api_key, base_url=f"{base_url}/v1", max_retries=0)
    upload = client.models.upload(
        model_name="sdk-lora", model_source=url, model_type="adapter", base_model=BASE_8B
    )
    assert upload.data.job_id.startswith("job-")
    model_name = (
        upload.data.x_model_name if hasattr(upload.data, "x_model_name") else upload.data.model_name
    )
    assert model_name == "devuser/sdk-lora"

    deadline = time.monotonic() + 20
    status = client.models.uploads.status(upload.data.job_id)
    while status.status not in ("Complete", "Failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        status = client.models.uploads.status(upload.data.job_id)
    assert status.status == "Complete", status

    reply = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "hello"}], max_tokens=12
    )
    assert reply.choices[0].message.content
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    stream = client.chat.completions.create(
        model=model_name,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=12,
        stream=True,
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta]
    assert "".join(p or "" for p in pieces)

    assert any(m.id == model_name for m in client.models.list())


def test_sdk_sees_errors_as_together_errors(together_emulator) -> None:
    client = together.Together(
        api_key=together_emulator.api_key,
        base_url=f"{together_emulator.base_url}/v1",
        max_retries=0,
    )
    with pytest.raises(together.NotFoundError):
        client.chat.completions.create(
            model="acme/none", messages=[{"role": "user", "content": "x"}]
        )
    wrong_key = together.Together(
        api_key="not-the-key", base_url=f"{together_emulator.base_url}/v1", max_retries=0
    )
    together_emulator.admin.configure(api_keys=[together_emulator.api_key])
    with pytest.raises(together.AuthenticationError):
        wrong_key.chat.completions.create(
            model="acme/none", messages=[{"role": "user", "content": "x"}]
        )


TOGETHER3 = Path(__file__).parents[1] / ".venv" / "together3"


@pytest.mark.skipif(
    not (TOGETHER3 / "together").is_dir(),
    reason="the 3.x SDK is installed by `make install` into .venv/together3",
)
def test_sdk3_inference_with_the_host_as_base_url(together_emulator) -> None:
    """together 3.x takes the bare host as base URL and calls /v1/... paths (its uploads
    moved to the v2 project API, the planned second backend)."""
    import subprocess

    with together_emulator.client() as client:
        up = client.upload_adapter("sdk3-lora", "acme/r", BASE_8B)
    together_emulator.admin.set_job_status(up.job_id, "Complete", "Job is Complete")
    code = f"""
import together
assert together.__version__.startswith("3."), together.__version__
client = together.Together(api_key={together_emulator.api_key!r},
                           base_url={together_emulator.base_url!r}, max_retries=0)
chat = client.chat.completions.create(model={up.model_name!r},
                                      messages=[{{"role": "user", "content": "hi"}}],
                                      max_tokens=8)
assert chat.choices[0].message.content, chat
text = client.completions.create(model={BASE_8B!r}, prompt="Once upon", max_tokens=4)
assert text.choices[0].text, text
try:
    client.chat.completions.create(model="acme/none", messages=[{{"role": "user",
                                                                  "content": "x"}}])
except together.NotFoundError:
    print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(TOGETHER3), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
