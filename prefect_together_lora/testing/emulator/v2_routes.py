"""The v2 routes: ``/v2/...`` (project-scoped and catalog), ``/v3/whoami`` and
``/v1/projects``, each behind the one key check and the project check."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from prefect_together_lora.testing.emulator.auth import api_key, v2_unauthorized
from prefect_together_lora.testing.emulator.errors import V2Error, v2_error_response
from prefect_together_lora.testing.emulator.state import EmulatorState
from prefect_together_lora.testing.emulator.v2 import page


def v2_router(state: EmulatorState) -> APIRouter:
    """``/v2/...`` (project-scoped and catalog), ``/v3/whoami`` and ``/v1/projects``."""
    v2 = state.v2
    config = state.config
    router = APIRouter()
    authorize = api_key(v2_unauthorized)

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise V2Error(400, "request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise V2Error(400, "request body must be a JSON object")
        return body

    def handler(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(request: Request, **path: str) -> Response:
            key = authorize(request)
            try:
                if "project_id" in path:
                    if key in config.org_keys:
                        raise V2Error(403, "an organization key cannot act on project resources")
                    v2.check_project(path.pop("project_id"))
                result = await fn(request, key=key, **path)
            except V2Error as exc:
                return v2_error_response(config, exc)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return wrapped

    def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            names = re.findall(r"{(\w+)}", path)
            wrapped = handler(fn)

            async def endpoint(request: Request) -> Response:
                return await wrapped(request, **{n: request.path_params[n] for n in names})

            router.add_api_route(path, endpoint, methods=[method], include_in_schema=False)
            return fn

        return register

    q = lambda request, name: request.query_params.get(name)  # noqa: E731

    @route("GET", "/v3/whoami")
    async def whoami(request: Request, key: str) -> Any:
        return v2.whoami(key)

    @route("GET", "/v1/projects")
    async def projects(request: Request, key: str) -> Any:
        return page(v2.projects(), request)

    @route("GET", "/v2/supported-models")
    async def supported(request: Request, key: str) -> Any:
        return page(v2.supported(dict(request.query_params)), request)

    @route("GET", "/v2/supported-models/{model_id}")
    async def supported_one(request: Request, key: str, model_id: str) -> Any:
        for item in v2.supported({}):
            if item["id"] == model_id:
                return item
        raise V2Error(404, f"supported model {model_id} not found")

    P = "/v2/projects/{project_id}"

    @route("GET", P + "/configs")
    async def configs(request: Request, key: str) -> Any:
        return page(v2.configs(dict(request.query_params)), request)

    @route("GET", P + "/configs/{config_id}")
    async def config_one(request: Request, key: str, config_id: str) -> Any:
        return v2.config_by_id(config_id)

    @route("POST", P + "/models")
    async def create_model(request: Request, key: str) -> Any:
        return v2.create_model(await body_of(request))

    @route("GET", P + "/models")
    async def list_models(request: Request, key: str) -> Any:
        return page([v2.model_wire(d) for d in v2.store.all("model")], request)

    # uploads are matched before /models/{model_id}
    @route("POST", P + "/models/uploads")
    async def create_upload(request: Request, key: str) -> Any:
        return v2.create_upload(await body_of(request))

    @route("GET", P + "/models/uploads")
    async def list_uploads(request: Request, key: str) -> Any:
        return page([v2.upload_wire(d) for d in v2.store.all("upload")], request)

    @route("GET", P + "/models/uploads/{upload_id}")
    async def get_upload(request: Request, key: str, upload_id: str) -> Any:
        return v2.upload_wire(v2.upload(upload_id))

    @route("GET", P + "/models/uploads/{upload_id}/events")
    async def upload_events(request: Request, key: str, upload_id: str) -> Any:
        return page(v2.events(upload_id), request)

    @route("GET", P + "/models/{model_id}")
    async def get_model(request: Request, key: str, model_id: str) -> Any:
        return v2.model_wire(v2.model(model_id))

    @route("PATCH", P + "/models/{model_id}")
    async def patch_model(request: Request, key: str, model_id: str) -> Any:
        return v2.update_model(model_id, await body_of(request), q(request, "updateMask"))

    @route("DELETE", P + "/models/{model_id}")
    async def delete_model(request: Request, key: str, model_id: str) -> Any:
        v2.delete_model(model_id)
        return {}

    @route("GET", P + "/models/{model_id}/revisions")
    async def revisions(request: Request, key: str, model_id: str) -> Any:
        return page(v2.revisions(model_id), request, id_key="revisionId")

    @route("GET", P + "/models/{model_id}/files")
    async def files(request: Request, key: str, model_id: str) -> Any:
        return v2.files(model_id, q(request, "revisionId"))

    @route("POST", P + "/endpoints")
    async def create_endpoint(request: Request, key: str) -> Any:
        return v2.create_endpoint(await body_of(request))

    @route("GET", P + "/endpoints")
    async def list_endpoints(request: Request, key: str) -> Any:
        return page([v2.endpoint_wire(d) for d in v2.store.all("endpoint")], request)

    @route("GET", P + "/endpoints/{endpoint_id}")
    async def get_endpoint(request: Request, key: str, endpoint_id: str) -> Any:
        return v2.endpoint_wire(v2.endpoint(endpoint_id))

    @route("PATCH", P + "/endpoints/{endpoint_id}")
    async def patch_endpoint(request: Request, key: str, endpoint_id: str) -> Any:
        return v2.update_endpoint(endpoint_id, await body_of(request), q(request, "updateMask"))

    @route("DELETE", P + "/endpoints/{endpoint_id}")
    async def delete_endpoint(request: Request, key: str, endpoint_id: str) -> Any:
        v2.delete_endpoint(endpoint_id, q(request, "etag"))
        return {}

    D = P + "/endpoints/{endpoint_id}/deployments"

    @route("POST", D)
    async def create_deployment(request: Request, key: str, endpoint_id: str) -> Any:
        validate_only = (q(request, "validateOnly") or "false").lower() == "true"
        return v2.create_deployment(endpoint_id, await body_of(request), validate_only)

    @route("GET", D)
    async def list_deployments(request: Request, key: str, endpoint_id: str) -> Any:
        v2.endpoint(endpoint_id)
        deps = [d for d in v2.store.all("deployment") if d["endpoint_id"] == endpoint_id]
        return page([v2.deployment_wire(d) for d in deps], request)

    @route("GET", D + "/{deployment_id}")
    async def get_deployment(
        request: Request, key: str, endpoint_id: str, deployment_id: str
    ) -> Any:
        return v2.deployment_wire(v2.deployment(endpoint_id, deployment_id))

    @route("PATCH", D + "/{deployment_id}")
    async def patch_deployment(
        request: Request, key: str, endpoint_id: str, deployment_id: str
    ) -> Any:
        return v2.update_deployment(
            endpoint_id, deployment_id, await body_of(request), q(request, "updateMask")
        )

    @route("DELETE", D + "/{deployment_id}")
    async def delete_deployment(
        request: Request, key: str, endpoint_id: str, deployment_id: str
    ) -> Any:
        v2.delete_deployment(endpoint_id, deployment_id, q(request, "etag"))
        return {}

    A = D + "/{deployment_id}/adapters"

    @route("POST", A)
    async def attach(request: Request, key: str, endpoint_id: str, deployment_id: str) -> Any:
        return v2.attach(endpoint_id, deployment_id, await body_of(request))

    @route("GET", A)
    async def list_attachments(
        request: Request, key: str, endpoint_id: str, deployment_id: str
    ) -> Any:
        v2.deployment(endpoint_id, deployment_id)
        return page([v2.attachment_wire(a) for a in v2.attachments_on(deployment_id)], request)

    @route("GET", A + "/{attachment_id}")
    async def get_attachment(
        request: Request, key: str, endpoint_id: str, deployment_id: str, attachment_id: str
    ) -> Any:
        return v2.attachment_wire(v2.attachment(endpoint_id, deployment_id, attachment_id))

    @route("PATCH", A + "/{attachment_id}")
    async def repin(
        request: Request, key: str, endpoint_id: str, deployment_id: str, attachment_id: str
    ) -> Any:
        return v2.repin(endpoint_id, deployment_id, attachment_id, await body_of(request))

    @route("DELETE", A + "/{attachment_id}")
    async def detach(
        request: Request, key: str, endpoint_id: str, deployment_id: str, attachment_id: str
    ) -> Any:
        v2.detach(endpoint_id, deployment_id, attachment_id, q(request, "etag"))
        return {}

    return router
