"""The v1 API: model listing and uploads, jobs, adapters on dedicated endpoints."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from prefect_together_lora.testing.emulator.auth import api_key, list_models_unauthorized
from prefect_together_lora.testing.emulator.config import BASE_MODEL_TABLES
from prefect_together_lora.testing.emulator.errors import error_response, json_body
from prefect_together_lora.testing.emulator.jobs import classify_source
from prefect_together_lora.testing.emulator.state import EmulatorState
from prefect_together_lora.testing.emulator.store import DuplicateName


def v1_router(state: EmulatorState) -> APIRouter:
    """``/v1/models`` (list, upload), ``/v1/jobs``, and dedicated-endpoint adapters."""
    config = state.config
    api = APIRouter()

    @api.get("/models")
    async def list_models(
        dedicated: bool = False, key: str = Depends(api_key(list_models_unauthorized))
    ) -> Response:
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
    async def upload(request: Request, key: str = Depends(api_key())) -> Response:
        body = await json_body(request)
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
    async def list_jobs(request: Request, key: str = Depends(api_key())) -> Response:
        return JSONResponse({"data": state.store.jobs(config.account)})

    @api.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request, key: str = Depends(api_key())) -> Response:
        doc = state.store.job(job_id, config.account)
        if doc is None:
            return error_response(404, f"Job {job_id} not found", code="not_found")
        return JSONResponse(doc)

    @api.api_route("/endpoints/{endpoint_id}/adapters", methods=["GET", "POST", "DELETE"])
    async def endpoint_adapters(
        endpoint_id: str, request: Request, key: str = Depends(api_key())
    ) -> Response:
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
        body = await json_body(request)
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

    return api
