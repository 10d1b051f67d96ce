"""One API-key check for every route. The answer to a missing or wrong key is the one each
API gives: v1's ``invalid_api_key`` error, v2's error in the account's shape, and the bare
``{"error": {"message": "Unauthorized"}}`` Together's ``GET /v1/models`` answers (documented
quirk)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from prefect_together_lora.testing.emulator.config import EmulatorConfig
from prefect_together_lora.testing.emulator.errors import (
    INVALID_KEY,
    V2Error,
    error_response,
    v2_error_response,
)


class Unauthorized(Exception):
    """Raised by :func:`api_key`; the app answers with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__("unauthorized")
        self.response = response


def bearer(request: Request, config: EmulatorConfig) -> str | None:
    """The request's bearer key when the account accepts it (any non-empty key when the
    account lists none)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    key = header[7:].strip()
    if not key or (config.api_keys and key not in config.api_keys):
        return None
    return key


def v1_unauthorized(config: EmulatorConfig) -> Response:
    return error_response(401, INVALID_KEY, code="invalid_api_key")


def list_models_unauthorized(config: EmulatorConfig) -> Response:
    return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)


def v2_unauthorized(config: EmulatorConfig) -> Response:
    return v2_error_response(config, V2Error(401, "Invalid API key provided.", "invalid_api_key"))


def api_key(
    unauthorized: Callable[[EmulatorConfig], Response] = v1_unauthorized,
) -> Callable[[Request], str]:
    """A FastAPI dependency (``key: str = Depends(api_key())``) returning the caller's key."""

    def dependency(request: Request) -> str:
        config: EmulatorConfig = request.app.state.emulator.config
        key = bearer(request, config)
        if key is None:
            raise Unauthorized(unauthorized(config))
        return key

    return dependency
