"""Fault injection and the request log: a pure ASGI middleware, so it can answer any status,
add latency, or drop the connection before or after the request is processed (a lost
response)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_together_lora.testing.emulator.errors import request_id

if TYPE_CHECKING:
    from prefect_together_lora.testing.emulator.state import EmulatorState


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
                    "id": request_id(),
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
