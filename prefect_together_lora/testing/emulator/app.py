"""The emulated Together HTTP API (FastAPI), served under ``/v1`` and its old alias ``/v0``.

Admin endpoints for tests live under ``/_emulator/`` and never under a versioned prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_together_lora.testing.emulator.config import BASE_MODEL_TABLES, EmulatorConfig
from prefect_together_lora.testing.emulator.inference import (
    RateLimiter,
    Scripts,
    count_tokens,
    generate,
    retry_after_headers,
)
from prefect_together_lora.testing.emulator.jobs import JobRunner, classify_source
from prefect_together_lora.testing.emulator.store import DuplicateName, Store
from prefect_together_lora.testing.emulator.v2 import V2Error, V2State, v2_router

INVALID_KEY = (
    "Invalid API key provided. You can find your API key at "
    "https://api.together.ai/settings/api-keys."
)


def _request_id() -> str:
    return f"{secrets.token_hex(4)}-{secrets.token_hex(3)}-{secrets.token_hex(8)}"


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "id": _request_id(),
        "error": {"message": message, "type": type_, "param": param, "code": code},
    }
    return JSONResponse(body, status_code=status, headers=headers)


class Fault(BaseModel):
    """An injected behaviour for requests matching ``method`` and the ``path`` regex."""

    method: str = "*"
    path: str = Field(description="Regex matched against the whole request path.")
    status: int | None = Field(default=None, description="Answer this status instead.")
    body: dict[str, Any] | None = Field(default=None, description="Body for the status answer.")
    headers: dict[str, str] = Field(default_factory=dict)
    latency_ms: float = 0
    drop: str | None = Field(
        default=None,
        description="'before': close the connection unanswered; 'after': process the request, "
        "then close the connection before the body is sent (a lost response).",
    )
    times: int = Field(default=1, ge=1, description="How many matching requests it applies to.")

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and re.fullmatch(self.path, path) is not None


class ScriptedAnswer(BaseModel):
    model: str
    prompt: str
    response: str


@dataclass
class EmulatorState:
    config: EmulatorConfig
    store: Store
    runner: JobRunner
    v2: V2State
    scripts: Scripts = field(default_factory=Scripts)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    faults: list[Fault] = field(default_factory=list)
    v2_calls: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


class _DropConnection(Exception):
    """Raised after the response started: uvicorn then closes the connection mid-response."""


class EmulatorMiddleware:
    """Request log, Together-like headers, and fault injection (pure ASGI, so it can drop)."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        entry: dict[str, Any] = {"method": method, "path": path, "status": None, "t": time.time()}
        if not path.startswith("/_emulator"):
            with self.state.lock:
                self.state.requests.append(entry)
        fault = None if path.startswith("/_emulator") else self.state.take_fault(method, path)
        received = time.time()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"cf-ray", f"{secrets.token_hex(8)}-EMU".encode()))
                headers.append((b"x-api-received", f"{received:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.drop == "before":
                entry["status"] = "dropped"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"100")],
                    }
                )
                raise _DropConnection()
            if fault.drop == "after":
                await self.app(scope, receive, _drop_after_start(send, entry))
                return
            if fault.status is not None:
                body = fault.body or {
                    "id": _request_id(),
                    "error": {
                        "message": f"Injected fault {fault.status}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    },
                }
                response = JSONResponse(body, status_code=fault.status, headers=fault.headers)
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _drop_after_start(send: Send, entry: dict[str, Any]) -> Callable[[Message], Awaitable[None]]:
    async def dropping_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            entry["status"] = "dropped"
            headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-length"]
            await send({**message, "headers": [*headers, (b"content-length", b"100000")]})
            raise _DropConnection()
        await send(message)

    return dropping_send


def create_app(config: EmulatorConfig | None = None, state_path: str | None = None) -> FastAPI:
    """Build the emulator app; the job runner starts with it and stops on shutdown."""
    config = config or EmulatorConfig()
    store = Store(state_path)
    runner = JobRunner(store, config)
    state = EmulatorState(
        config=config, store=store, runner=runner, v2=V2State(config, store, runner)
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.runner.resume_pending()
        state.v2.resume()
        try:
            yield
        finally:
            state.v2.shutdown()
            state.runner.shutdown()
            store.close()

    app = FastAPI(
        title="Together API emulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.emulator = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message)

    api = APIRouter()
    _add_api_routes(api, state)
    app.include_router(v2_router(state, lambda request: _bearer(request, config)))
    app.include_router(api, prefix="/v1")
    app.include_router(api, prefix="/v0")
    app.include_router(_admin_router(state), prefix="/_emulator")
    app.add_middleware(EmulatorMiddleware, state=state)
    return app


def _bearer(request: Request, config: EmulatorConfig) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    key = header[7:].strip()
    if not key or (config.api_keys and key not in config.api_keys):
        return None
    return key


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "Request body must be a JSON object.")
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object.")
    return body


def _add_api_routes(api: APIRouter, state: EmulatorState) -> None:
    config = state.config

    def unauthorized() -> JSONResponse:
        return error_response(401, INVALID_KEY, code="invalid_api_key")

    @api.get("/models")
    async def list_models(request: Request, dedicated: bool = False) -> Response:
        if _bearer(request, config) is None:
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        if dedicated:
            return JSONResponse([])
        models: list[dict[str, Any]] = [
            {
                "id": m,
                "object": "model",
                "created": 1721692800,
                "type": "chat",
                "display_name": m.split("/")[-1],
                "organization": m.split("/")[0],
                "context_length": config.context_length,
                "pricing": {"hourly": 0, "input": 0.18, "output": 0.18, "base": 0, "finetune": 0},
            }
            for m in BASE_MODEL_TABLES.get(config.base_models, BASE_MODEL_TABLES["all"])
        ]
        if config.list_adapters:
            models += [
                {
                    "id": m.name,
                    "object": "model",
                    "created": int(time.time()),
                    "type": "chat",
                    "display_name": m.name.split("/")[-1],
                    "organization": config.account,
                    "context_length": config.context_length,
                }
                for m in state.store.models(config.account)
                if m.status == "Complete"
            ]
        return JSONResponse(models)

    @api.post("/models")
    async def upload(request: Request) -> Response:
        if _bearer(request, config) is None:
            return unauthorized()
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        for name in ("model_name", "model_source"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                return error_response(400, f"{name} is required", param=name)
        model_type = body.get("model_type", "model")
        if model_type not in ("model", "adapter"):
            return error_response(
                400, "model_type must be one of: model, adapter", param="model_type"
            )
        source = body["model_source"].strip()
        kind = classify_source(source)
        if kind == "invalid":
            return error_response(
                400,
                "model_source must be a Hugging Face repo or an https:// presigned URL",
                param="model_source",
            )
        name = f"{config.account}/{body['model_name'].strip()}"
        try:
            doc, model_id = state.store.create_upload(
                config.account,
                name,
                source,
                kind,
                model_type,
                body.get("base_model"),
                body.get("description"),
            )
        except DuplicateName:
            if config.duplicate_mode == "200":
                return JSONResponse({"message": "Model name already exists"})
            return error_response(400, "Model name already exists", param="model_name")
        state.runner.submit(
            doc["job_id"], source, model_type, body.get("base_model"), body.get("hf_token")
        )
        return JSONResponse(
            {
                "data": {
                    "job_id": doc["job_id"],
                    "model_name": name,
                    "model_id": model_id,
                    "model_source": kind,
                },
                "message": "Processing model weights. Job created.",
            }
        )

    @api.get("/jobs")
    async def list_jobs(request: Request) -> Response:
        if _bearer(request, config) is None:
            return unauthorized()
        return JSONResponse({"data": state.store.jobs(config.account)})

    @api.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> Response:
        if _bearer(request, config) is None:
            return unauthorized()
        doc = state.store.job(job_id, config.account)
        if doc is None:
            return error_response(404, f"Job {job_id} not found", code="not_found")
        return JSONResponse(doc)

    @api.api_route("/endpoints/{endpoint_id}/adapters", methods=["GET", "POST", "DELETE"])
    async def endpoint_adapters(endpoint_id: str, request: Request) -> Response:
        if _bearer(request, config) is None:
            return unauthorized()
        endpoint = next((e for e in config.endpoints if e.id == endpoint_id), None)
        if endpoint is None:
            return error_response(404, "No endpoint with this id exists", code="not_found")
        if request.method == "GET":
            return JSONResponse(
                {
                    "object": "list",
                    "data": [
                        {
                            "model_id": f"{endpoint.name}:{adapter}",
                            "adapter_name": adapter,
                            "endpoint_name": endpoint.name,
                        }
                        for _, adapter in state.store.attachments(endpoint_id)
                    ],
                }
            )
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        model_id = body.get("model_id")
        if not isinstance(model_id, str) or model_id.count(":") != 1:
            return error_response(
                400,
                "model_id must be in format 'endpoint_model_name:adapter_name'",
                param="model_id",
            )
        endpoint_name, adapter = model_id.split(":")
        if endpoint_name != endpoint.name:
            return error_response(
                400, "endpoint name in model_id does not match endpoint", param="model_id"
            )
        if request.method == "DELETE":
            if not state.store.detach(endpoint_id, adapter):
                return error_response(400, "adapter is not bound to endpoint")
            return JSONResponse({"model_id": model_id})
        record = state.store.model(adapter)
        if record is None or record.status != "Complete":
            return error_response(404, "Could not find model", param="model_id")
        if not endpoint.lora:
            return error_response(400, "endpoint does not have LoRA enabled")
        if record.base_model != endpoint.base_model:
            return error_response(400, "adapter base model is not compatible with endpoint model")
        bound = [a for _, a in state.store.attachments(endpoint_id)]
        if adapter in bound:
            return error_response(400, "adapter is already bound to endpoint")
        if len(bound) >= endpoint.max_adapters:
            return error_response(
                400, f"endpoint already serves its maximum of {endpoint.max_adapters} adapters"
            )
        state.store.attach(endpoint_id, adapter)
        return JSONResponse({"model_id": model_id})

    @api.post("/chat/completions")
    async def chat(request: Request) -> Response:
        return await _inference(request, state, "chat")

    @api.post("/completions")
    async def completions(request: Request) -> Response:
        return await _inference(request, state, "completion")


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


async def _inference(request: Request, state: EmulatorState, kind: str) -> Response:
    config = state.config
    key = _bearer(request, config)
    if key is None:
        return error_response(401, INVALID_KEY, code="invalid_api_key")
    body = await _json_body(request)
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
    rid, created = _request_id(), int(time.time())
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


def _admin_router(state: EmulatorState) -> APIRouter:
    admin = APIRouter()

    @admin.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @admin.get("/config")
    async def get_config() -> dict[str, Any]:
        return state.config.model_dump()

    @admin.patch("/config")
    async def patch_config(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = sorted(set(body) - set(EmulatorConfig.model_fields))
        if unknown:
            return error_response(400, f"unknown config field(s): {', '.join(unknown)}")
        merged = EmulatorConfig.model_validate({**state.config.model_dump(), **body})
        for name in body:
            setattr(state.config, name, getattr(merged, name))
        if "rate_limit_rps" in body or "rate_limit_burst" in body:
            state.limiter.reset()
        return JSONResponse(state.config.model_dump())

    @admin.post("/scripts")
    async def add_scripts(answers: list[ScriptedAnswer]) -> dict[str, int]:
        for answer in answers:
            state.scripts.add(answer.model, answer.prompt, answer.response)
        return {"scripts": len(state.scripts)}

    @admin.delete("/scripts")
    async def clear_scripts() -> dict[str, int]:
        state.scripts.clear()
        return {"scripts": 0}

    @admin.post("/faults")
    async def add_faults(faults: list[Fault]) -> dict[str, int]:
        with state.lock:
            state.faults.extend(faults)
            return {"faults": len(state.faults)}

    @admin.delete("/faults")
    async def clear_faults() -> dict[str, int]:
        with state.lock:
            state.faults.clear()
        return {"faults": 0}

    @admin.get("/requests")
    async def requests_log() -> list[dict[str, Any]]:
        with state.lock:
            return list(state.requests)

    @admin.delete("/requests")
    async def clear_requests() -> dict[str, int]:
        with state.lock:
            state.requests.clear()
        return {"requests": 0}

    @admin.post("/jobs/{job_id}/status")
    async def force_status(job_id: str, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        state.store.transition(
            job_id, str(body.get("status")), str(body.get("message", "")), force=True
        )
        return JSONResponse(state.store.job(job_id, state.config.account) or {})

    return admin


__all__ = ["EmulatorState", "Fault", "ScriptedAnswer", "create_app"]
