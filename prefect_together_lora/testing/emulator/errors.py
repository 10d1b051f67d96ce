"""The emulator's two error body shapes: v1's ``{"error": {...}}`` (with a request id) and
v2's, standard or RPC (``{code, message, details}``) as the account's setting says."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from prefect_together_lora.testing.emulator.config import EmulatorConfig

# gRPC status codes for the RPC error shape
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}

INVALID_KEY = (
    "Invalid API key provided. You can find your API key at "
    "https://api.together.ai/settings/api-keys."
)


def request_id() -> str:
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
        "id": request_id(),
        "error": {"message": message, "type": type_, "param": param, "code": code},
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def json_body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "Request body must be a JSON object.")
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object.")
    return body


class V2Error(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def v2_error_response(config: EmulatorConfig, error: V2Error) -> JSONResponse:
    if config.v2_error_shape == "rpc":
        body: dict[str, Any] = {
            "code": _GRPC.get(error.status, 2),
            "message": error.message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "detail": error.message}
            ],
        }
    else:
        body = {
            "error": {
                "message": error.message,
                "type": "invalid_request_error" if error.status < 500 else "server_error",
                "param": None,
                "code": error.code,
            }
        }
    return JSONResponse(body, status_code=error.status)
