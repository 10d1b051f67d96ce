"""The ``/_emulator/`` admin API: health, settings, scripted answers, faults, the request
log and forced job statuses (for tests and demos; never under a versioned prefix)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from prefect_together_lora.testing.emulator.config import EmulatorConfig
from prefect_together_lora.testing.emulator.errors import error_response, json_body
from prefect_together_lora.testing.emulator.faults import Fault
from prefect_together_lora.testing.emulator.state import EmulatorState, ScriptedAnswer


def admin_router(state: EmulatorState) -> APIRouter:
    admin = APIRouter()

    @admin.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @admin.get("/config")
    async def get_config() -> dict[str, Any]:
        return state.config.model_dump()

    @admin.patch("/config")
    async def patch_config(request: Request) -> Response:
        body = await json_body(request)
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
        body = await json_body(request)
        if isinstance(body, JSONResponse):
            return body
        state.store.transition(
            job_id, str(body.get("status")), str(body.get("message", "")), force=True
        )
        return JSONResponse(state.store.job(job_id, state.config.account) or {})

    return admin
