"""TogetherClient / AsyncTogetherClient against the emulator on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from prefect_together_lora.client import AsyncTogetherClient, TogetherClient, source_identity
from prefect_together_lora.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNameTaken,
    ModelNotAvailable,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailable,
    TogetherConnectionError,
    UploadRejected,
)
from prefect_together_lora.retry import RetryPolicy
from prefect_together_lora.schemas import JobStatus

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
FAST = RetryPolicy(max_attempts=4, initial_delay_s=0.01, max_delay_s=0.05)
SIGNED = "http://127.0.0.1:9/bucket/a.zip?X-Amz-Signature=FAKESIGNATUREzz42&X-Amz-Expires=9"


@pytest.fixture
def client(together_emulator):
    with TogetherClient(together_emulator.api_key, together_emulator.base_url, retry=FAST) as c:
        yield c


def wait_terminal(client: TogetherClient, job_id: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job.is_terminal:
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_base_url_with_v1_suffix_is_normalised(together_emulator) -> None:
    with TogetherClient("k", together_emulator.base_url + "/v1/") as c:
        assert c.base_url == together_emulator.base_url
        assert c.list_models()


def test_list_models_and_chat_and_complete(client) -> None:
    ids = [m.id for m in client.list_models()]
    assert BASE in ids
    chat = client.chat(BASE, [{"role": "user", "content": "hello"}], max_tokens=16, seed=3)
    assert (
        chat.text
        and chat.model == BASE
        and chat.usage.total_tokens == (chat.usage.prompt_tokens + chat.usage.completion_tokens)
    )
    again = client.chat(BASE, [{"role": "user", "content": "hello"}], max_tokens=16, seed=3)
    assert again.text == chat.text  # deterministic for (model, prompt, seed)
    completion = client.complete(BASE, "The capital of France is", max_tokens=4)
    assert completion.finish_reason in ("length", "eos")
    assert len(completion.text.split()) <= 4


def test_rate_limit_headers_are_parsed_on_inference(client) -> None:
    chat = client.chat(BASE, [{"role": "user", "content": "hi"}])
    assert chat.rate_limit is not None
    assert chat.rate_limit.limit is not None and chat.rate_limit.remaining is not None
    assert chat.rate_limit.token_limit == 200000
    assert chat.rate_limit.remaining_fraction is not None


def test_unknown_model_is_model_not_available(client) -> None:
    with pytest.raises(ModelNotAvailable) as info:
        client.chat("acme/nope", [{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and info.value.code == "model_not_available"
    assert info.value.request_id


def test_bad_key_is_authentication_error_on_every_route(together_emulator) -> None:
    together_emulator.admin.configure(api_keys=["right-key"])
    with TogetherClient("wrong-key", together_emulator.base_url, retry=FAST) as c:
        with pytest.raises(AuthenticationError) as info:
            c.chat(BASE, [{"role": "user", "content": "x"}])
        assert info.value.code == "invalid_api_key"
        with pytest.raises(AuthenticationError) as thin:
            c.list_models()  # the real thin body: {"error": {"message": "Unauthorized"}}
        assert thin.value.error_type is None
        with pytest.raises(AuthenticationError):
            c.list_jobs()
    assert len(together_emulator.admin.requests()) == 3  # 401 is never retried


def test_unknown_job_is_not_found(client) -> None:
    with pytest.raises(NotFoundError):
        client.get_job("job-does-not-exist")
    with pytest.raises(ValueError):
        client.get_job("")


def test_invalid_request_is_not_retried(client, together_emulator) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client.chat(BASE, [{"role": "user", "content": "x"}], max_tokens=0)
    assert info.value.param == "max_tokens"
    together_emulator.admin.fault(
        r"/v1/jobs", status=422, body={"error": {"message": "bad", "type": "invalid_request_error"}}
    )
    with pytest.raises(InvalidRequestError):
        client.list_jobs()
    assert len(together_emulator.admin.requests(path="/v1/chat/completions")) == 1


def test_transient_errors_are_retried_then_succeed(client, together_emulator) -> None:
    together_emulator.admin.fault(r"/v1/models", method="GET", status=503, times=2)
    assert client.list_models()
    statuses = [r["status"] for r in together_emulator.admin.requests(path="/v1/models")]
    assert statuses == [503, 503, 200]


@pytest.mark.reliability("429 with Retry-After: waited, then answered")
def test_retry_after_is_honoured(client, together_emulator) -> None:
    together_emulator.admin.fault(
        r"/v1/models", method="GET", status=429, headers={"retry-after": "0.4"}
    )
    start = time.monotonic()
    client.list_models()
    assert time.monotonic() - start >= 0.4
    assert len(together_emulator.admin.requests(path="/v1/models")) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RateLimitError),
        (503, ServiceUnavailable),
        (500, ServerError),
        (502, ServerError),
    ],
)
@pytest.mark.reliability("typed error once retries are spent")
def test_exhausted_retries_raise_the_precise_error(
    client, together_emulator, status, error
) -> None:
    together_emulator.admin.fault(r"/v1/jobs", status=status, times=10)
    with pytest.raises(error) as info:
        client.list_jobs()
    assert info.value.status_code == status
    assert len(together_emulator.admin.requests(path="/v1/jobs")) == FAST.max_attempts


@pytest.mark.reliability("dropped connection retried")
def test_dropped_connections_are_retried(client, together_emulator) -> None:
    together_emulator.admin.fault(r"/v1/jobs", drop="before", times=2)
    assert client.list_jobs() == []


def test_unreachable_host_raises_connection_error_without_secrets(caplog) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "sk-secret-key-never-shown-123"
    caplog.set_level(logging.DEBUG)
    with (
        TogetherClient(key, f"http://127.0.0.1:{port}", retry=FAST) as c,
        pytest.raises(TogetherConnectionError) as info,
    ):
        c.list_jobs()
    assert key not in str(info.value) and key not in repr(info.value)
    assert key not in caplog.text
    assert "after 4 attempt(s)" in str(info.value)


def test_upload_then_job_completes(client, together_emulator) -> None:
    together_emulator.admin.configure(job_seconds=0.1)
    up = client.upload_adapter("lora-a", "acme/some-adapter", BASE, description="d")
    assert up.model_name == "devuser/lora-a" and up.job_id.startswith("job-")
    job = wait_terminal(client, up.job_id)
    assert job.model_name == "devuser/lora-a"
    assert next(u.status for u in job.status_updates) == JobStatus.QUEUED
    assert client.list_jobs()[0].job_id == up.job_id


def test_upload_request_body(together_emulator) -> None:
    import httpx

    seen: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.read()
        seen["path"] = request.url.path
        seen["auth"] = request.headers["authorization"]
        return httpx.Response(
            200, json={"data": {"job_id": "job-1", "model_name": "u/n"}, "message": "job created"}
        )

    c = TogetherClient(
        "key-123", "https://api.together.xyz/v1", transport=httpx.MockTransport(handler)
    )
    up = c.upload_adapter("n", SecretStr(SIGNED), BASE, hf_token=SecretStr("hf_tok"))
    import json

    body = json.loads(seen["body"])
    assert seen["path"] == "/v1/models" and seen["auth"] == "Bearer key-123"
    assert body == {
        "model_name": "n",
        "model_source": SIGNED,
        "model_type": "adapter",
        "base_model": BASE,
        "hf_token": "hf_tok",
    }
    assert up.job_id == "job-1" and up.model_id is None  # minimal docs shape accepted


def test_flat_upload_response_is_accepted() -> None:
    import httpx

    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            200, json={"job_id": "job-9", "model_name": "u/x", "message": "job created"}
        )
    )
    up = TogetherClient("k", transport=transport).upload_adapter("x", "o/r", BASE)
    assert (up.job_id, up.model_name) == ("job-9", "u/x")


@pytest.mark.reliability("200 without data: UploadRejected")
def test_200_without_data_is_upload_rejected(client, together_emulator) -> None:
    together_emulator.admin.fault(
        r"/v1/models",
        method="POST",
        status=200,
        body={"message": "Could not process the request"},
    )
    with pytest.raises(UploadRejected, match="created no job"):
        client.upload_adapter("x", "acme/r", BASE)


@pytest.mark.reliability("weights exist: follows our job")
def test_weights_already_exist_follows_our_earlier_job(client, together_emulator) -> None:
    """The re-submit case: HTTP 200, no data, "weights already exist" — our own earlier job
    (same name, same source) is followed, not reported as a rejection."""
    first = client.upload_adapter("resubmit", "acme/r", BASE)
    together_emulator.admin.fault(
        r"/v1/models",
        method="POST",
        status=200,
        body={"message": "Model weights already exist for devuser/resubmit"},
    )
    again = client.upload_adapter("resubmit", "acme/r", BASE)
    assert again.reconciled and again.job_id == first.job_id
    together_emulator.admin.fault(
        r"/v1/models",
        method="POST",
        status=200,
        body={"message": "Model weights already exist"},
    )
    with pytest.raises(ModelNameTaken):  # not ours: a clear error, never a silent success
        client.upload_adapter("someone-else", "acme/r", BASE)


@pytest.mark.together_emulator(latency_ms=1500)
@pytest.mark.reliability("slow generation sent once, typed")
def test_a_slow_generation_is_not_resent(together_emulator) -> None:
    """A non-streamed answer slower than the read timeout: re-sending would generate and bill
    it again; the client stops after one request and says why."""
    from prefect_together_lora.errors import TogetherConnectionError

    with (
        together_emulator.client(timeout_s=0.3) as slow,
        pytest.raises(TogetherConnectionError, match="not re-sent"),
    ):
        slow.chat(BASE, [{"role": "user", "content": "hi"}], max_tokens=4)
    sent = together_emulator.admin.requests(method="POST", path="/v1/chat/completions")
    assert len(sent) == 1


@pytest.mark.parametrize("mode", ["error", "200"])
def test_duplicate_name_same_source_reconciles(client, together_emulator, mode) -> None:
    together_emulator.admin.configure(duplicate_mode=mode)
    first = client.upload_adapter("dup", "https://huggingface.co/acme/r", BASE)
    again = client.upload_adapter("dup", "acme/r", BASE)  # same repo, other spelling
    assert again.reconciled and again.job_id == first.job_id
    assert again.model_name == "devuser/dup"


@pytest.mark.parametrize("mode", ["error", "200"])
def test_duplicate_name_other_source_is_model_name_taken(client, together_emulator, mode) -> None:
    together_emulator.admin.configure(duplicate_mode=mode)
    client.upload_adapter("taken", SIGNED, BASE)
    with pytest.raises(ModelNameTaken) as info:
        client.upload_adapter("taken", "acme/other", BASE)
    text = str(info.value)
    assert "different adapter" in text and "name_suffix='auto'" in text
    assert "FAKESIGNATUREzz42" not in text  # the other source's signature is not revealed


@pytest.mark.reliability("lost POST answer: one job")
def test_lost_upload_response_is_reconciled(client, together_emulator) -> None:
    together_emulator.admin.fault(r"/v1/models", method="POST", drop="after")
    up = client.upload_adapter("lost", SIGNED, BASE)
    assert up.reconciled
    jobs = client.list_jobs()
    assert [j.job_id for j in jobs] == [up.job_id]  # exactly one job on the server
    posts = together_emulator.admin.requests(method="POST", path="/v1/models")
    assert [p["status"] for p in posts] == ["dropped", 400]


def test_source_identity() -> None:
    assert source_identity("acme/r") == source_identity("https://huggingface.co/acme/r/tree/main")
    assert source_identity(SIGNED) == "http://127.0.0.1:9/bucket/a.zip"


def test_non_enum_status_is_kept_and_non_terminal(client, together_emulator) -> None:
    together_emulator.admin.configure(job_status_alias="Processing", job_seconds=1.0)
    up = client.upload_adapter("proc", "acme/r", BASE)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        job = client.get_job(up.job_id)
        if job.status.value == "Processing":
            assert not job.is_terminal and not job.status.is_known
            break
        time.sleep(0.02)
    else:
        raise AssertionError("never saw Processing")


@pytest.mark.reliability("no secret in reprs or messages")
def test_secrets_never_in_reprs_or_messages(client, together_emulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    up = client.upload_adapter("sec", SecretStr(SIGNED), BASE, hf_token=SecretStr("hf_" + "x" * 34))
    job = client.get_job(up.job_id)
    for text in (repr(client), repr(job), job.model_dump_json(), str(job.args), repr(up)):
        assert "FAKESIGNATUREzz42" not in text and "hf_xxxx" not in text
        assert together_emulator.api_key not in text
    assert (
        job.args is not None and job.args.model_source_redacted == "http://127.0.0.1:9/bucket/a.zip"
    )
    assert "FAKESIGNATUREzz42" not in caplog.text and together_emulator.api_key not in caplog.text


def test_async_client_mirrors_the_sync_client(together_emulator) -> None:
    async def main() -> None:
        async with AsyncTogetherClient(
            together_emulator.api_key, together_emulator.base_url, retry=FAST
        ) as c:
            together_emulator.admin.fault(r"/v1/chat/completions", status=503)
            chats = await asyncio.gather(
                *[
                    c.chat(BASE, [{"role": "user", "content": f"q{i}"}], max_tokens=8)
                    for i in range(5)
                ]
            )
            assert all(ch.text for ch in chats)
            up = await c.upload_adapter("async-a", "acme/r", BASE)
            assert (await c.get_job(up.job_id)).job_id == up.job_id
            assert len(await c.list_jobs()) == 1 and await c.list_models()
            assert (await c.complete(BASE, "x", max_tokens=2)).text
            again = await c.upload_adapter("async-a", "acme/r", BASE)
            assert again.reconciled
            with pytest.raises(ModelNotAvailable):
                await c.chat("nope/nope", [{"role": "user", "content": "x"}])

    asyncio.run(main())


def test_status_messages_never_carry_a_signature() -> None:
    from prefect_together_lora.schemas import Job

    job = Job.model_validate(
        {
            "job_id": "j",
            "status": "Failed",
            "status_updates": [
                {"status": "Failed", "message": f"Could not download {SIGNED}: 403"}
            ],
        }
    )
    assert "FAKESIGNATUREzz42" not in job.status_updates[0].message
    assert "http://127.0.0.1:9/bucket/a.zip?<redacted>" in job.status_updates[0].message


@pytest.mark.reliability("402/403 name their cause")
def test_402_and_403_say_what_they_mean() -> None:
    import pickle

    from prefect_together_lora.errors import (
        AdapterInvalid,
        AuthenticationError,
        InvalidRequestError,
        PaymentRequired,
        error_from_response,
    )
    from prefect_together_lora.schemas import Finding

    def answer(status: int, message: str) -> Any:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
        return error_from_response(
            httpx.Response(status, json=body, request=httpx.Request("POST", "http://x/"))
        )

    paid = answer(402, "Credit limit exceeded")
    assert isinstance(paid, PaymentRequired) and "spending limit" in paid.message
    long = answer(403, "Input validation error: inputs tokens + max_new_tokens must be <= 8192")
    assert isinstance(long, InvalidRequestError) and not isinstance(long, AuthenticationError)
    assert "TOGETHER_API_KEY" not in long.message
    assert isinstance(answer(403, "Forbidden"), AuthenticationError)
    invalid = AdapterInvalid([Finding(code="X", severity="error", message="m")], "s3://b/a.zip")
    again = pickle.loads(pickle.dumps(invalid))
    assert type(again) is AdapterInvalid and again.findings == invalid.findings
    assert str(again) == str(invalid)
