"""Inference (``/v1/chat/completions``, ``/v1/completions``) for v1 models, v2 endpoints and
attached adapters: validation of the request, cold starts, rate limits, scripted answers,
streaming and logprobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from prefect_together_lora.testing.emulator.auth import api_key
from prefect_together_lora.testing.emulator.config import BASE_MODEL_TABLES, EmulatorConfig
from prefect_together_lora.testing.emulator.errors import (
    V2Error,
    error_response,
    json_body,
    request_id,
)
from prefect_together_lora.testing.emulator.inference import (
    count_tokens,
    generate,
    retry_after_headers,
)
from prefect_together_lora.testing.emulator.state import EmulatorState


def inference_router(state: EmulatorState) -> APIRouter:
    api = APIRouter()

    @api.post("/chat/completions")
    async def chat(request: Request, key: str = Depends(api_key())) -> Response:
        return await _inference(request, key, state, "chat")

    @api.post("/completions")
    async def completions(request: Request, key: str = Depends(api_key())) -> Response:
        return await _inference(request, key, state, "completion")

    return api


def _unable(model: str) -> str:
    return (
        f"Unable to access model {model}. Please visit https://api.together.ai/models to view "
        "the list of supported models."
    )


def _resolve_v1(state: EmulatorState, model: str) -> tuple[str, int | None] | JSONResponse:
    """A v1 model string → (the model that answers, its calls so far when it is an uploaded
    model, for the cold start), or the error Together answers."""
    config = state.config
    if ":" in model:  # endpoint_model_name:adapter_name, for adapters attached to an endpoint
        endpoint_name, _, adapter = model.partition(":")
        endpoints = {e.id for e in config.endpoints if e.name == endpoint_name}
        if not any(e in endpoints for e, a in state.store.attachments() if a == adapter):
            return error_response(404, _unable(model), code="model_not_available")
        model = adapter
    record = state.store.model(model)
    bases = BASE_MODEL_TABLES.get(config.base_models, BASE_MODEL_TABLES["all"])
    if model not in bases and (record is None or record.status != "Complete"):
        return error_response(404, _unable(model), code="model_not_available")
    if record is None:
        return model, None
    if config.dedicated_only and not _attached(state, model):
        return error_response(
            400,
            f"Unable to access non-serverless model {model}. Please visit "
            f"https://api.together.ai/models/{model} to create and start a new dedicated "
            "endpoint for the model.",
            code="model_not_available",
        )
    return model, state.store.count_call(model)


def _attached(state: EmulatorState, adapter: str) -> bool:
    return any(a == adapter for _, a in state.store.attachments())


def _validate_inference(body: dict[str, Any], kind: str) -> JSONResponse | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_response(400, "model is required", param="model")
    if kind == "chat":
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and "role" in m for m in messages)
        ):
            return error_response(
                400, "messages must be a non-empty list of messages", param="messages"
            )
    elif not isinstance(body.get("prompt"), str):
        return error_response(400, "prompt is required", param="prompt")
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        (
            "max_tokens",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "max_tokens must be a positive integer",
        ),
        (
            "logprobs",
            lambda v: isinstance(v, int) and 0 <= v <= 20,
            "logprobs must be an integer between 0 and 20",
        ),
        ("n", lambda v: isinstance(v, int) and 1 <= v <= 128, "n must be between 1 and 128"),
        (
            "temperature",
            lambda v: isinstance(v, (int, float)) and 0 <= v <= 2,
            "temperature must be between 0 and 2",
        ),
        (
            "seed",
            lambda v: isinstance(v, int) and not isinstance(v, bool),
            "seed must be an integer",
        ),
        (
            "stop",
            lambda v: (
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
            ),
            "stop must be a string or an array of strings",
        ),
    ]
    for name, ok, message in checks:
        if body.get(name) is not None and not ok(body[name]):
            return error_response(400, message, param=name)
    return None


def _prompt_text(body: dict[str, Any], kind: str) -> tuple[str, str]:
    """(the text tokens are counted on, the text scripts are keyed on)."""
    if kind == "completion":
        return body["prompt"], body["prompt"]
    parts = [str(m.get("content") or "") for m in body["messages"]]
    users = [str(m.get("content") or "") for m in body["messages"] if m.get("role") == "user"]
    return "\n".join(parts), (users[-1] if users else parts[-1])


def _rate_headers(config: EmulatorConfig, left: float) -> dict[str, str]:
    limit = config.rate_limit_rps or 600
    return {
        "x-ratelimit-limit": f"{limit:g}",
        "x-ratelimit-remaining": str(int(left if config.rate_limit_rps else limit)),
        "x-ratelimit-reset": "1",
        "x-tokenlimit-limit": "200000",
        "x-tokenlimit-remaining": "199000",
        "x-ratelimit-limit-dynamic": f"{limit:g}",
        "x-ratelimit-remaining-dynamic": str(int(left if config.rate_limit_rps else limit)),
    }


async def _inference(request: Request, key: str, state: EmulatorState, kind: str) -> Response:
    config = state.config
    body = await json_body(request)
    if isinstance(body, JSONResponse):
        return body
    invalid = _validate_inference(body, kind)
    if invalid is not None:
        return invalid
    model = requested = body["model"]
    extra_headers: dict[str, str] = {}
    calls: int | None
    routed = state.v2.route(model)
    if isinstance(routed, V2Error):
        return error_response(routed.status, routed.message, code=routed.code)
    if routed is not None:  # a v2 deployment: an endpoint, a pinned deployment, an adapter
        model, extra_headers["x-cluster"] = routed
        with state.lock:
            calls = state.v2_calls.get(requested, 0)
            state.v2_calls[requested] = calls + 1
    else:
        resolved = _resolve_v1(state, model)
        if isinstance(resolved, JSONResponse):
            return resolved
        model, calls = resolved
    if calls is not None and calls < config.cold_start_calls:
        if config.cold_start_status == 503:
            return error_response(
                503, "The server is overloaded or not ready yet.", type_="service_unavailable"
            )
        return error_response(404, _unable(model), code="model_not_available")
    allowed, left, wait = state.limiter.take(
        key, model, config.rate_limit_rps, config.rate_limit_burst
    )
    if not allowed:
        headers = {**_rate_headers(config, 0), **retry_after_headers(wait)}
        return error_response(
            429,
            "You have exceeded the rate limit for this model. Please slow down and retry.",
            type_="dynamic_request_limited",
            headers=headers,
        )
    counted, scripted_key = _prompt_text(body, kind)
    max_tokens = body.get("max_tokens")
    if count_tokens(counted) + (max_tokens or 0) > config.context_length:
        if kind == "chat" and body.get("context_length_exceeded_behavior") == "truncate":
            max_tokens = max(1, config.context_length - count_tokens(counted))
        else:
            return error_response(
                400,
                f"Input validation error: inputs tokens + max_new_tokens "
                f"must be <= {config.context_length}.",
                param="max_tokens",
            )
    if config.latency_ms:
        await asyncio.sleep(config.latency_ms / 1000)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    gens = [
        generate(
            model=model,
            prompt=counted,
            seed=body.get("seed"),
            temperature=body.get("temperature"),
            max_tokens=max_tokens,
            stop=stop,
            scripted=state.scripts.lookup(model, scripted_key),
            default_finish="stop" if kind == "chat" else "eos",
            variant=i,
        )
        for i in range(body.get("n") or 1)
    ]
    usage = {
        "prompt_tokens": gens[0].prompt_tokens,
        "completion_tokens": sum(g.completion_tokens for g in gens),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    rid, created = request_id(), int(time.time())
    headers = {**_rate_headers(config, left), **extra_headers}
    if body.get("stream"):
        return StreamingResponse(
            _stream(kind, rid, created, requested, gens, usage),
            media_type="text/event-stream;charset=utf-8",
            headers=headers,
        )
    choices: list[dict[str, Any]]
    if kind == "chat":
        choices = [
            {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": g.text,
                    "tool_calls": [],
                    "reasoning": None,
                },
                "logprobs": _logprobs(g.text, body.get("logprobs")),
                "finish_reason": g.finish_reason,
                "seed": g.seed,
            }
            for i, g in enumerate(gens)
        ]
        obj = "chat.completion"
    else:
        choices = []
        for i, g in enumerate(gens):
            choice: dict[str, Any] = {
                "index": i,
                "text": g.text,
                "finish_reason": g.finish_reason,
                "seed": g.seed,
            }
            if body.get("logprobs"):
                choice["logprobs"] = _logprobs(g.text, body["logprobs"])
            choices.append(choice)
        obj = "text.completion"
    prompt_part = [{"text": counted}] if body.get("echo") else []
    return JSONResponse(
        {
            "id": rid,
            "object": obj,
            "created": created,
            "model": requested,
            "prompt": prompt_part,
            "choices": choices,
            "usage": usage,
        },
        headers=headers,
    )


def _logprobs(text: str, wanted: int | None) -> dict[str, Any] | None:
    if not wanted:
        return None
    tokens = text.split(" ") if text else []
    return {
        "tokens": tokens,
        "token_logprobs": [-0.25] * len(tokens),
        "token_ids": [abs(hash(t)) % 128000 for t in tokens],
    }


async def _stream(
    kind: str, rid: str, created: int, model: str, gens: list[Any], usage: dict[str, int]
) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if kind == "chat" else "completion.chunk"
    for index, gen in enumerate(gens):
        pieces = gen.text.split(" ") if gen.text else []
        for n, piece in enumerate(pieces):
            text = piece if n == 0 else f" {piece}"
            last = n == len(pieces) - 1
            chunk = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": index,
                        "text": text,
                        "logprobs": None,
                        "seed": gen.seed,
                        "finish_reason": gen.finish_reason if last else None,
                        "delta": {
                            "token_id": n,
                            "role": "assistant",
                            "content": text,
                            "reasoning": None,
                        },
                    }
                ],
                "usage": None,
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0)
    final = {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }
    yield f"data: {json.dumps(final)}\n\n".encode()
    yield b"data: [DONE]\n\n"
