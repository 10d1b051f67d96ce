"""The emulated Together HTTP API (FastAPI): v1 under ``/v1`` and its old alias ``/v0``, v2
(``/v2``, ``/v3/whoami``, ``/v1/projects``), inference, and the ``/_emulator/`` admin API.

Modules: ``errors`` (both body shapes), ``auth`` (the one key check), ``faults`` (injection and
request log), ``state``, and one route module per API: ``v1_routes``, ``v2_routes``,
``inference_routes``, ``admin_routes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from prefect_together_lora.testing.emulator.admin_routes import admin_router
from prefect_together_lora.testing.emulator.auth import Unauthorized
from prefect_together_lora.testing.emulator.config import EmulatorConfig
from prefect_together_lora.testing.emulator.errors import error_response
from prefect_together_lora.testing.emulator.faults import EmulatorMiddleware
from prefect_together_lora.testing.emulator.inference_routes import inference_router
from prefect_together_lora.testing.emulator.jobs import JobRunner
from prefect_together_lora.testing.emulator.state import EmulatorState
from prefect_together_lora.testing.emulator.store import Store
from prefect_together_lora.testing.emulator.v1_routes import v1_router
from prefect_together_lora.testing.emulator.v2 import V2State
from prefect_together_lora.testing.emulator.v2_routes import v2_router


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

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> Response:
        return exc.response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message)

    app.include_router(v2_router(state))
    for prefix in ("/v1", "/v0"):
        app.include_router(v1_router(state), prefix=prefix)
        app.include_router(inference_router(state), prefix=prefix)
    app.include_router(admin_router(state), prefix="/_emulator")
    app.add_middleware(EmulatorMiddleware, state=state)
    return app


__all__ = ["EmulatorState", "create_app"]
