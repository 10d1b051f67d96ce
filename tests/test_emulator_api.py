"""The emulator's HTTP contract: schemas from the official OpenAPI spec, Together's quirks,
inference behaviour, rate limits, faults — exercised with raw HTTP like any client would."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.helpers import BASE_8B, wait_job
from tests.openapi import assert_conforms

# v1 suites run as an account that still has serverless LoRA inference (legacy setting)
pytestmark = pytest.mark.together_emulator(dedicated_only=False)


@pytest.fixture
def http(together_emulator):
    headers = {"Authorization": f"Bearer {together_emulator.api_key}"}
    with httpx.Client(base_url=together_emulator.base_url, headers=headers, timeout=10) as c:
        yield c


def test_answers_conform_to_the_openapi_components(http, together_emulator) -> None:
    upload = http.post(
        "/v1/models",
        json={
            "model_name": "n",
            "model_source": "acme/r",
            "model_type": "adapter",
            "base_model": BASE_8B,
        },
    )
    assert upload.status_code == 200
    assert_conforms(upload.json(), "ModelUploadSuccessResponse")
    job_id = upload.json()["data"]["job_id"]
    assert_conforms(http.get(f"/v1/jobs/{job_id}").json(), "JobInfoSuccessResponse")
    with together_emulator.client() as c:
        wait_job(c, job_id)
    done = http.get(f"/v1/jobs/{job_id}").json()
    assert_conforms(done, "JobInfoSuccessResponse")
    assert_conforms(http.get("/v1/jobs").json(), "JobsInfoSuccessResponse")
    chat = http.post(
        "/v1/chat/completions",
        json={"model": BASE_8B, "messages": [{"role": "user", "content": "hi"}], "logprobs": 1},
    )
    assert_conforms(chat.json(), "ChatCompletionResponse")
    comp = http.post("/v1/completions", json={"model": BASE_8B, "prompt": "x", "echo": True})
    assert_conforms(comp.json(), "CompletionResponse")
    comp = http.post("/v1/completions", json={"model": BASE_8B, "prompt": "x", "logprobs": 2})
    assert_conforms(comp.json(), "CompletionResponse")
    for bad in (
        http.get("/v1/jobs/job-nope"),
        http.post(
            "/v1/chat/completions",
            json={"model": "x/y", "messages": [{"role": "user", "content": "q"}]},
        ),
        http.post("/v1/models", json={"model_name": "n"}),
        http.delete("/v1/models/n"),
    ):
        assert bad.status_code >= 400
        assert_conforms(bad.json(), "ErrorData")
        assert "id" in bad.json()


def test_models_list_is_a_bare_array_with_adapters(http, together_emulator) -> None:
    up = http.post("/v1/models", json={"model_name": "listed", "model_source": "acme/r"}).json()
    together_emulator.admin.set_job_status(up["data"]["job_id"], "Complete", "Job is Complete")
    models = http.get("/v1/models").json()
    assert isinstance(models, list) and {"id", "object", "type"} <= set(models[0])
    assert "devuser/listed" in [m["id"] for m in models]
    assert http.get("/v1/models", params={"dedicated": "true"}).json() == []


def test_v0_alias_and_request_id_headers(http) -> None:
    response = http.post(
        "/v0/models",
        json={
            "model_name": "old",
            "model_source": "acme/r",
            "model_type": "adapter",
            "base_model": BASE_8B,
        },
    )
    assert response.status_code == 200 and response.headers["cf-ray"]
    assert "x-api-received" in response.headers
    assert http.get("/v1/jobs").json()["data"][0]["args"]["modelName"] == "devuser/old"


def test_upload_validation_errors(http) -> None:
    missing = http.post("/v1/models", json={"model_source": "acme/r"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model_name"
    wrong = http.post(
        "/v1/models", json={"model_name": "a", "model_source": "acme/r", "model_type": "lora"}
    )
    assert wrong.json()["error"]["param"] == "model_type"
    assert http.post("/v1/models", content=b"not json").status_code == 400


def test_missing_key_gets_the_real_401_bodies(together_emulator) -> None:
    with httpx.Client(base_url=together_emulator.base_url) as anon:
        r = anon.post("/v1/chat/completions", json={"model": BASE_8B, "messages": []})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert anon.get("/v1/models").json() == {"error": {"message": "Unauthorized"}}


def test_max_tokens_stop_and_determinism(http) -> None:
    def ask(**extra):
        return http.post(
            "/v1/chat/completions",
            json={
                "model": BASE_8B,
                "messages": [{"role": "user", "content": "explain"}],
                "seed": 5,
                **extra,
            },
        ).json()

    full = ask()["choices"][0]
    assert full["finish_reason"] == "stop" and full["seed"] == 5
    assert ask()["choices"][0]["message"]["content"] == full["message"]["content"]
    cut = ask(max_tokens=3)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert len(cut["choices"][0]["message"]["content"].split()) == 3
    assert cut["usage"]["completion_tokens"] == 3
    word = full["message"]["content"].split()[2]
    stopped = ask(stop=[word])["choices"][0]
    assert word not in stopped["message"]["content"] and stopped["finish_reason"] == "stop"
    other = ask(seed=6)["choices"][0]["message"]["content"]
    assert other != full["message"]["content"]


def test_parameter_validation(http) -> None:
    for extra, param in [
        ({"logprobs": 21}, "logprobs"),
        ({"n": 0}, "n"),
        ({"stop": [1]}, "stop"),
        ({"max_tokens": 9000}, "max_tokens"),
    ]:
        r = http.post(
            "/v1/chat/completions",
            json={"model": BASE_8B, "messages": [{"role": "user", "content": "x"}], **extra},
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == param, extra
    ok = http.post(
        "/v1/chat/completions",
        json={
            "model": BASE_8B,
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 9000,
            "context_length_exceeded_behavior": "truncate",
        },
    )
    assert ok.status_code == 200


def test_streaming_sse(http) -> None:
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": BASE_8B,
            "messages": [{"role": "user", "content": "stream"}],
            "seed": 1,
            "stream": True,
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    whole = http.post(
        "/v1/chat/completions",
        json={"model": BASE_8B, "messages": [{"role": "user", "content": "stream"}], "seed": 1},
    ).json()
    assert text == whole["choices"][0]["message"]["content"]
    missing = http.post(
        "/v1/chat/completions",
        json={"model": "x/none", "messages": [{"role": "user", "content": "s"}], "stream": True},
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_available"


def test_adapter_not_ready_then_cold_start_then_serves(http, together_emulator) -> None:
    together_emulator.admin.configure(cold_start_calls=2, job_seconds=30)
    up = http.post("/v1/models", json={"model_name": "cold", "model_source": "acme/r"}).json()
    body = {"model": "devuser/cold", "messages": [{"role": "user", "content": "x"}]}
    early = http.post("/v1/chat/completions", json=body)
    assert early.status_code == 404 and early.json()["error"]["code"] == "model_not_available"
    together_emulator.admin.set_job_status(up["data"]["job_id"], "Complete", "Job is Complete")
    assert [http.post("/v1/chat/completions", json=body).status_code for _ in range(3)] == [
        503,
        503,
        200,
    ]


def test_scripted_answers_make_adapter_differ_from_base(http, together_emulator) -> None:
    together_emulator.admin.script(BASE_8B, "What is 2+2?", "4")
    ask = http.post(
        "/v1/chat/completions",
        json={
            "model": BASE_8B,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "What is 2+2?"},
            ],
        },
    ).json()
    assert ask["choices"][0]["message"]["content"] == "4"
    comp = http.post("/v1/completions", json={"model": BASE_8B, "prompt": "What is 2+2?"}).json()
    assert comp["choices"][0]["text"] == "4"


def test_token_bucket_429_with_retry_after(http, together_emulator) -> None:
    together_emulator.admin.configure(rate_limit_rps=2, rate_limit_burst=2)
    body = {"model": BASE_8B, "messages": [{"role": "user", "content": "x"}]}
    statuses = [http.post("/v1/chat/completions", json=body) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[-1]
    assert limited.json()["error"]["type"] == "dynamic_request_limited"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["retry-after"]) >= 1
    time.sleep(float(limited.headers["retry-after-ms"]) / 1000)
    assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_fault_latency_and_admin_not_under_v1(http, together_emulator) -> None:
    together_emulator.admin.fault(r"/v1/jobs", latency_ms=300)
    start = time.monotonic()
    assert http.get("/v1/jobs").status_code == 200
    assert time.monotonic() - start >= 0.3
    assert http.get("/v1/_emulator/config").status_code == 404
    assert together_emulator.admin.config()["account"] == "devuser"
    with pytest.raises(httpx.HTTPStatusError):
        together_emulator.admin.configure(no_such_field=1)


def test_endpoint_adapters(http, together_emulator) -> None:
    together_emulator.admin.configure(
        endpoints=[
            {"id": "ep-1", "name": "acme/llama-8b-lora", "base_model": BASE_8B, "max_adapters": 1},
            {"id": "ep-2", "name": "acme/no-lora", "base_model": BASE_8B, "lora": False},
        ],
        dedicated_only=True,
    )
    up = http.post(
        "/v1/models",
        json={
            "model_name": "attach-me",
            "model_source": "acme/r",
            "model_type": "adapter",
            "base_model": BASE_8B,
        },
    ).json()
    together_emulator.admin.set_job_status(up["data"]["job_id"], "Complete", "Job is Complete")
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    assert (
        http.post("/v1/chat/completions", json={"model": "devuser/attach-me", **ask})
        .json()["error"]["message"]
        .startswith("Unable to access non-serverless")
    )

    def call(method: str, endpoint: str, model_id: str | None = None) -> httpx.Response:
        body = None if model_id is None else {"model_id": model_id}
        return http.request(method, f"/v1/endpoints/{endpoint}/adapters", json=body)

    for method, endpoint, model_id, message in [
        ("POST", "ep-9", "acme/llama-8b-lora:devuser/attach-me", "No endpoint with this id"),
        ("POST", "ep-1", "devuser/attach-me", "must be in format"),
        ("POST", "ep-1", "acme/other:devuser/attach-me", "does not match endpoint"),
        ("POST", "ep-1", "acme/llama-8b-lora:devuser/ghost", "Could not find model"),
        ("POST", "ep-2", "acme/no-lora:devuser/attach-me", "does not have LoRA enabled"),
        ("DELETE", "ep-1", "acme/llama-8b-lora:devuser/attach-me", "is not bound"),
    ]:
        response = call(method, endpoint, model_id)
        assert message in response.json()["error"]["message"], (method, endpoint, model_id)
    attached = call("POST", "ep-1", "acme/llama-8b-lora:devuser/attach-me")
    assert attached.json() == {"model_id": "acme/llama-8b-lora:devuser/attach-me"}
    assert (
        "already bound"
        in call("POST", "ep-1", "acme/llama-8b-lora:devuser/attach-me").json()["error"]["message"]
    )
    second = http.post(
        "/v1/models",
        json={
            "model_name": "attach-two",
            "model_source": "acme/r",
            "model_type": "adapter",
            "base_model": BASE_8B,
        },
    ).json()
    together_emulator.admin.set_job_status(second["data"]["job_id"], "Complete", "done")
    assert (
        "maximum of 1"
        in call("POST", "ep-1", "acme/llama-8b-lora:devuser/attach-two").json()["error"]["message"]
    )
    listing = call("GET", "ep-1").json()
    assert listing["data"] == [
        {
            "model_id": "acme/llama-8b-lora:devuser/attach-me",
            "adapter_name": "devuser/attach-me",
            "endpoint_name": "acme/llama-8b-lora",
        }
    ]
    for model in ("acme/llama-8b-lora:devuser/attach-me", "devuser/attach-me"):
        reply = http.post("/v1/chat/completions", json={"model": model, **ask}).json()
        assert reply["model"] == model and reply["choices"][0]["message"]["content"]
    assert call("DELETE", "ep-1", "acme/llama-8b-lora:devuser/attach-me").status_code == 200
    assert (
        http.post(
            "/v1/chat/completions", json={"model": "acme/llama-8b-lora:devuser/attach-me", **ask}
        ).status_code
        == 404
    )
