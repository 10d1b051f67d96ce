"""A typed httpx client of Together's v2 project-scoped API (the same retry, error and redaction
core as the v1 client; no Prefect).

Conventions it hides: the project id in every path (from the caller, ``TOGETHER_PROJECT_ID`` or
``GET /v3/whoami``), camelCase bodies, cursor pagination, and etags. Creates are sent as
non-idempotent calls (never re-sent after the server may have acted; callers reconcile by
reading back). 409 is not retried by the HTTP layer: a stale etag is handled here by re-reading
the resource and applying the change once more, never by re-sending the stale write.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr

from prefect_together_lora.client import Call, SyncHttpClient
from prefect_together_lora.errors import ConflictError
from prefect_together_lora.redaction import secret_value
from prefect_together_lora.retry import RetryPolicy
from prefect_together_lora.together.settings import DEFAULT_BASE_URL
from prefect_together_lora.together.v2_schemas import (
    Attachment,
    Deployment,
    Endpoint,
    ModelConfig,
    ModelFile,
    ModelRecord,
    Page,
    Project,
    RemoteUpload,
    Revision,
    SupportedModel,
    TrafficEntry,
    UploadEvent,
    Whoami,
)

_IDENTITIES: dict[tuple[str, str], Whoami] = {}
_M = TypeVar("_M", bound=BaseModel)
_R = TypeVar("_R")
PAGE_LIMIT = 100


def _q(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("an id in a v2 path is empty")
    return quote(value.strip(), safe="")


class TogetherV2Client(SyncHttpClient):
    """Synchronous client of the v2 control plane (models, uploads, revisions, endpoints,
    deployments, adapter attachments). Inference goes through the v1-shaped client pointed at
    the inference host."""

    def __init__(
        self,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        *,
        project_id: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # 409 means a stale etag or an existing name here: re-sending the same write is wrong
        policy = retry or RetryPolicy()
        retry = replace(policy, retry_statuses=policy.retry_statuses - {409})
        super().__init__(
            api_key,
            base_url,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
            transport=transport,
        )
        self._project_id = project_id or os.environ.get("TOGETHER_PROJECT_ID") or None
        self._project_slug: str | None = None

    # -- identity ---------------------------------------------------------------------------

    def whoami(self) -> Whoami:
        return Whoami.model_validate(self.send(Call("GET", "/v3/whoami")).json())

    def _identify(self) -> None:
        # a key's identity does not change: one whoami per host and key in this process,
        # not one per task
        cache_key = (
            self.base_url,
            hashlib.sha256(self._api_key.get_secret_value().encode()).hexdigest(),
        )
        me = _IDENTITIES.get(cache_key)
        if me is None:
            me = _IDENTITIES[cache_key] = self.whoami()
        if me.project is not None and self._project_id in (None, me.project.id):
            self._project_id, self._project_slug = me.project.id, me.project.slug
            return
        if not self._project_id:
            raise ValueError(
                f"This API key is a {me.type!r} key, not scoped to a project: set "
                "TOGETHER_PROJECT_ID (or the credentials block's project id)."
            )
        # an organization key acting on a named project: its slug from the project list
        for project in self._list("/v1/projects", Project):
            if project.id == self._project_id:
                self._project_slug = project.slug
                return
        self._project_slug = ""  # unknown: the API returns every name qualified anyway

    @property
    def project_id(self) -> str:
        """The project every path is scoped to (``proj_…``), discovered once when not given."""
        if not self._project_id:
            self._identify()
        assert self._project_id is not None
        return self._project_id

    @property
    def project_slug(self) -> str | None:
        """The slug prepended to names (inference strings are ``<slug>/<name>``)."""
        if self._project_slug is None:
            self._identify()
        return self._project_slug or None

    def _p(self, path: str = "") -> str:
        return f"/v2/projects/{_q(self.project_id)}{path}"

    # -- plumbing ---------------------------------------------------------------------------

    def _get(self, path: str, model: type[_M], params: dict[str, Any] | None = None) -> _M:
        return model.model_validate(self.send(Call("GET", path, params=params)).json())

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            query = {**(params or {}), "limit": PAGE_LIMIT}
            if after:
                query["after"] = after
            page = Page.model_validate(self.send(Call("GET", path, params=query)).json())
            yield from page.data
            if not page.next_cursor or page.next_cursor == after or not page.data:
                return
            after = page.next_cursor

    def _list(self, path: str, model: type[_M], params: dict[str, Any] | None = None) -> list[_M]:
        return [model.model_validate(item) for item in self._pages(path, params)]

    # -- catalog ----------------------------------------------------------------------------

    def list_supported(self, search: str | None = None) -> list[SupportedModel]:
        return self._list(
            "/v2/supported-models", SupportedModel, {"search": search} if search else None
        )

    def get_config(self, config_id: str) -> ModelConfig:
        return self._get(self._p(f"/configs/{_q(config_id)}"), ModelConfig)

    # -- models -----------------------------------------------------------------------------

    def create_model(
        self, name: str, base_model_id: str, description: str | None = None
    ) -> ModelRecord:
        body: dict[str, Any] = {"name": name, "baseModelId": base_model_id, "type": "adapter"}
        if description:
            body["description"] = description
        response = self.send(Call("POST", self._p("/models"), body, idempotent=False))
        return ModelRecord.model_validate(response.json())

    def get_model(self, model_id: str) -> ModelRecord:
        return self._get(self._p(f"/models/{_q(model_id)}"), ModelRecord)

    def list_models(self) -> list[ModelRecord]:
        return self._list(self._p("/models"), ModelRecord)

    def delete_model(self, model_id: str) -> None:
        self.send(Call("DELETE", self._p(f"/models/{_q(model_id)}")))

    def list_revisions(self, model_id: str) -> list[Revision]:
        """Newest first."""
        return self._list(self._p(f"/models/{_q(model_id)}/revisions"), Revision)

    def list_files(self, model_id: str, revision_id: str | None = None) -> list[ModelFile]:
        params = {"revisionId": revision_id} if revision_id else None
        return self._list(self._p(f"/models/{_q(model_id)}/files"), ModelFile, params)

    # -- remote uploads ---------------------------------------------------------------------

    def create_upload(
        self, model_id: str, remote_url: str | SecretStr, token: str | SecretStr | None = None
    ) -> RemoteUpload:
        body: dict[str, Any] = {"modelId": model_id, "remoteUrl": secret_value(remote_url)}
        if token_value := secret_value(token):
            body["token"] = token_value
        response = self.send(Call("POST", self._p("/models/uploads"), body, idempotent=False))
        return RemoteUpload.model_validate(response.json())

    def get_upload(self, upload_id: str) -> RemoteUpload:
        return self._get(self._p(f"/models/uploads/{_q(upload_id)}"), RemoteUpload)

    def list_uploads(self) -> list[RemoteUpload]:
        return self._list(self._p("/models/uploads"), RemoteUpload)

    def upload_events(
        self, upload_id: str, after: str | None = None
    ) -> tuple[list[UploadEvent], str | None]:
        """One page of an upload's events from ``after`` and the cursor to continue from."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if after:
            params["after"] = after
        response = self.send(
            Call("GET", self._p(f"/models/uploads/{_q(upload_id)}/events"), params=params)
        )
        page = Page.model_validate(response.json())
        return [UploadEvent.model_validate(e) for e in page.data], page.next_cursor

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, name: str) -> Endpoint:
        response = self.send(
            Call(
                "POST",
                self._p("/endpoints"),
                {"name": name, "visibility": "VISIBILITY_PRIVATE"},
                idempotent=False,
            )
        )
        return Endpoint.model_validate(response.json())

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return self._get(self._p(f"/endpoints/{_q(endpoint_id)}"), Endpoint)

    def list_endpoints(self) -> list[Endpoint]:
        return self._list(self._p("/endpoints"), Endpoint)

    def set_traffic(
        self, endpoint_id: str, change: Callable[[list[TrafficEntry]], list[TrafficEntry]]
    ) -> Endpoint:
        """Apply ``change`` to the endpoint's traffic split under its etag; a stale etag (409)
        re-reads the endpoint and applies ``change`` once more."""

        def write(endpoint: Endpoint) -> Endpoint:
            split = change(list(endpoint.traffic_split))
            body = {
                "etag": endpoint.etag,
                # sent explicitly even when empty: an omitted field means "no fields to update"
                "trafficSplit": [e.model_dump(by_alias=True) for e in split],
            }
            response = self.send(
                Call(
                    "PATCH",
                    self._p(f"/endpoints/{_q(endpoint.id)}"),
                    body,
                    params={"updateMask": "trafficSplit"},
                )
            )
            return Endpoint.model_validate(response.json())

        return self._with_fresh_etag(lambda: self.get_endpoint(endpoint_id), write)

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._with_fresh_etag(
            lambda: self.get_endpoint(endpoint_id),
            lambda ep: self.send(
                Call("DELETE", self._p(f"/endpoints/{_q(ep.id)}"), params={"etag": ep.etag})
            ),
        )

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(
        self,
        endpoint_id: str,
        name: str,
        *,
        model: str,
        config: str,
        min_replicas: int,
        max_replicas: int,
        inactive_timeout: int | None = None,
        enable_lora: bool | None = None,
    ) -> Deployment:
        body: dict[str, Any] = {
            "name": name,
            "model": model,
            "config": config,
            "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
        }
        if inactive_timeout is not None:
            body["inactiveTimeout"] = inactive_timeout
        if enable_lora is not None:
            body["enableLora"] = enable_lora
        response = self.send(
            Call(
                "POST",
                self._p(f"/endpoints/{_q(endpoint_id)}/deployments"),
                body,
                idempotent=False,
            )
        )
        return Deployment.model_validate(response.json())

    def get_deployment(self, endpoint_id: str, deployment_id: str) -> Deployment:
        return self._get(
            self._p(f"/endpoints/{_q(endpoint_id)}/deployments/{_q(deployment_id)}"), Deployment
        )

    def list_deployments(self, endpoint_id: str) -> list[Deployment]:
        return self._list(self._p(f"/endpoints/{_q(endpoint_id)}/deployments"), Deployment)

    def scale_deployment(
        self, endpoint_id: str, deployment_id: str, min_replicas: int, max_replicas: int
    ) -> Deployment:
        def write(dep: Deployment) -> Deployment:
            response = self.send(
                Call(
                    "PATCH",
                    self._p(f"/endpoints/{_q(endpoint_id)}/deployments/{_q(dep.id)}"),
                    {
                        "etag": dep.etag,
                        "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
                    },
                    params={"updateMask": "autoscaling"},
                )
            )
            return Deployment.model_validate(response.json())

        return self._with_fresh_etag(lambda: self.get_deployment(endpoint_id, deployment_id), write)

    def delete_deployment(self, endpoint_id: str, deployment_id: str) -> None:
        self._with_fresh_etag(
            lambda: self.get_deployment(endpoint_id, deployment_id),
            lambda dep: self.send(
                Call(
                    "DELETE",
                    self._p(f"/endpoints/{_q(endpoint_id)}/deployments/{_q(dep.id)}"),
                    params={"etag": dep.etag},
                )
            ),
        )

    # -- adapter attachments ----------------------------------------------------------------

    def _adapters(self, endpoint_id: str, deployment_id: str, rest: str = "") -> str:
        return self._p(
            f"/endpoints/{_q(endpoint_id)}/deployments/{_q(deployment_id)}/adapters{rest}"
        )

    def attach_adapter(
        self,
        endpoint_id: str,
        deployment_id: str,
        adapter_model_id: str,
        revision_id: str | None = None,
        force: bool = False,
    ) -> Attachment:
        body: dict[str, Any] = {"adapterModelId": adapter_model_id, "force": force}
        if revision_id:
            body["adapterRevisionId"] = revision_id
        response = self.send(
            Call("POST", self._adapters(endpoint_id, deployment_id), body, idempotent=False)
        )
        return Attachment.model_validate(response.json())

    def get_attachment(
        self, endpoint_id: str, deployment_id: str, attachment_id: str
    ) -> Attachment:
        return self._get(
            self._adapters(endpoint_id, deployment_id, f"/{_q(attachment_id)}"), Attachment
        )

    def list_attachments(self, endpoint_id: str, deployment_id: str) -> list[Attachment]:
        return self._list(self._adapters(endpoint_id, deployment_id), Attachment)

    def detach_adapter(self, endpoint_id: str, deployment_id: str, attachment_id: str) -> None:
        self._with_fresh_etag(
            lambda: self.get_attachment(endpoint_id, deployment_id, attachment_id),
            lambda att: self.send(
                Call(
                    "DELETE",
                    self._adapters(endpoint_id, deployment_id, f"/{_q(att.id)}"),
                    params={"etag": att.etag},
                )
            ),
        )

    # -- etags ------------------------------------------------------------------------------

    @staticmethod
    def _with_fresh_etag(read: Callable[[], _R], write: Callable[[_R], Any]) -> Any:
        """Read, write with the read's etag; on 409 (someone changed it meanwhile) read again
        and write once more. A second 409 is raised: the resource is contended."""
        try:
            return write(read())
        except ConflictError:
            return write(read())
