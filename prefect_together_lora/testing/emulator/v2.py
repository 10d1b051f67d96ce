"""The emulated v2 (project-scoped) API: whoami and projects, supported models and configs,
model records, remote uploads that really download and check the archive (independently of the
plugin's validator), upload events, revisions with validation errors, files, endpoints,
deployments with state machines and replicas, traffic splits and adapter attachments under
etags, and Together's teardown rules.

State lives in the emulator's SQLite store (it survives a restart with ``--state``); states that
move with time (deployments, adapter loading) are derived from timestamps when read, so they
advance on the clock without a background thread. Answers follow the SDK 3.x types exactly
(camelCase, int64 as strings, RFC 3339 times, ``next_cursor`` pagination).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from prefect_together_lora.testing.emulator.catalog_v2 import (
    BASES,
    PLATFORM_PROJECT,
    BaseSpec,
    base_by_config,
    base_by_weights,
    config_doc,
    supported_model,
)
from prefect_together_lora.testing.emulator.errors import V2Error
from prefect_together_lora.testing.emulator.jobs import JobFailure, check_adapter_files

if TYPE_CHECKING:
    from prefect_together_lora.testing.emulator.config import EmulatorConfig
    from prefect_together_lora.testing.emulator.jobs import JobRunner
    from prefect_together_lora.testing.emulator.store import Store

logger = logging.getLogger("prefect_together_lora.emulator.v2")

UP = "REMOTE_UPLOAD_STATUS_"
REV = "REVISION_VALIDATION_STATUS_"
DEP = "DEPLOYMENT_STATE_"
ADP = "ADAPTER_LOAD_STATE_"
_TENSOR = re.compile(r"layers\.(\d+)\.(?:[\w.]+\.)?(\w+_proj)\.lora_([AB])\.weight$")


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def page(items: list[dict[str, Any]], request: Request, id_key: str = "id") -> dict[str, Any]:
    """Cursor pagination: ``after`` is the id of the last item seen; ``next_cursor`` is the id
    of the last item returned while more remain, else null."""
    try:
        limit = int(request.query_params.get("limit", "50"))
    except ValueError:
        raise V2Error(400, "limit must be an integer") from None
    if not 1 <= limit <= 500:
        raise V2Error(400, "limit must be between 1 and 500")
    after = request.query_params.get("after")
    if after:
        ids = [item[id_key] for item in items]
        if after not in ids:
            raise V2Error(400, f"invalid cursor {after!r}")
        items = items[ids.index(after) + 1 :]
    chunk = items[:limit]
    more = len(items) > limit
    return {"object": "list", "data": chunk, "next_cursor": chunk[-1][id_key] if more else None}


class V2State:
    """All v2 behaviour; the routes below only translate HTTP to these calls."""

    def __init__(self, config: EmulatorConfig, store: Store, runner: JobRunner) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.lock = threading.RLock()
        self._stop = threading.Event()

    @property
    def slug(self) -> str:
        return self.config.project_slug

    def qualify(self, name: str) -> str:
        return f"{self.slug}/{name}"

    def shutdown(self) -> None:
        self._stop.set()

    # -- auth / projects ----------------------------------------------------------------------

    def check_project(self, project_id: str) -> None:
        if project_id != self.config.project_id:
            if self.config.wrong_project_status == 404:
                raise V2Error(404, f"project {project_id} not found")
            raise V2Error(403, f"the API key does not have access to project {project_id}")

    def whoami(self, key: str) -> dict[str, Any]:
        org = {"id": self.config.organization_id, "name": self.config.organization_name}
        api_key = {"id": "key_" + hashlib.sha256(key.encode()).hexdigest()[:10]}
        if key in self.config.org_keys:
            return {"type": "org_api_key", "api_key": api_key, "organization": org}
        return {
            "type": "project_api_key",
            "api_key": api_key,
            "organization": org,
            "project": self._project_brief(),
        }

    def _project_brief(self) -> dict[str, str]:
        return {
            "id": self.config.project_id,
            "name": self.config.project_name,
            "slug": self.config.project_slug,
        }

    def projects(self) -> list[dict[str, Any]]:
        return [
            {
                **self._project_brief(),
                "organization_id": self.config.organization_id,
                "organization_name": self.config.organization_name,
            }
        ]

    # -- catalog ------------------------------------------------------------------------------

    def supported(self, query: dict[str, str]) -> list[dict[str, Any]]:
        items = [supported_model(b) for b in BASES]
        if search := query.get("search"):
            items = [
                m
                for m in items
                if search.lower() in m["name"].lower()
                or any(search.lower() in p["modelName"].lower() for p in m["deploymentProfiles"])
            ]
        if mode := query.get("adapterMode"):
            if not mode.startswith("ADAPTER_MODE_"):
                raise V2Error(400, "invalid filter expression: adapterMode")
            items = [
                m
                for m in items
                if any(p.get("adapterMode") == mode for p in m["deploymentProfiles"])
            ]
        if product := query.get("product"):
            items = [m for m in items if product in m["products"]]
        if modality := query.get("modality"):
            items = [m for m in items if modality in m["inputModalities"]]
        return items

    def configs(self, query: dict[str, str]) -> list[dict[str, Any]]:
        ref = query.get("referenceModelId") or query.get("referenceModel", "").rsplit("/", 1)[-1]
        docs = []
        for base in BASES:
            if ref and base.weights_id != ref:
                continue
            docs += [config_doc(base, mode, PLATFORM_PROJECT) for mode in base.adapter_modes]
        return docs

    def config_by_id(self, config_id: str) -> dict[str, Any]:
        found = base_by_config(config_id)
        if found is None:
            raise V2Error(404, f"config {config_id} not found")
        return config_doc(found[0], found[1], PLATFORM_PROJECT)

    # -- model records ------------------------------------------------------------------------

    def model_wire(self, doc: dict[str, Any]) -> dict[str, Any]:
        base = base_by_weights(doc["base_model_id"])
        wire: dict[str, Any] = {
            "id": doc["id"],
            "name": doc["name"],
            "organizationId": self.config.organization_id,
            "projectId": self.config.project_id,
            "visibility": doc.get("visibility", "VISIBILITY_PRIVATE"),
            "weights": {
                "type": "WEIGHTS_TYPE_ADAPTER"
                if doc["type"] == "adapter"
                else "WEIGHTS_TYPE_DEFAULT"
            },
            "baseModelId": doc["base_model_id"],
            "baseModel": base.weights_path if base else None,
        }
        if base and base.dims:
            wire["weights"]["contextLength"] = str(base.context_length)
        if doc.get("description"):
            wire["description"] = doc["description"]
        return {k: v for k, v in wire.items() if v is not None}

    def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        base_id = body.get("baseModelId")
        if not isinstance(base_id, str) or not base_id:
            raise V2Error(400, "base_model_id is required")
        if base_id.startswith("arch_"):
            raise V2Error(
                400, f"base_model_id must be a weights id (ml_...), not a catalog id ({base_id})"
            )
        if base_by_weights(base_id) is None:
            raise V2Error(400, f"base model {base_id} is not a supported base model")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise V2Error(400, "name is required")
        name = name.strip()
        if "/" in name:
            slug, _, rest = name.partition("/")
            if slug != self.slug or "/" in rest:
                raise V2Error(400, f"name must be bare or '{self.slug}/<name>' (got {name!r})")
            name = rest
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            raise V2Error(400, f"invalid model name {name!r}")
        kind = body.get("type")
        if kind not in ("model", "adapter", "models", "adapters"):
            raise V2Error(400, "type must be one of: model, adapter")
        with self.lock:
            if any(d["name"] == self.qualify(name) for d in self.store.all("model")):
                raise V2Error(
                    self.config.v2_duplicate_status,
                    f"Model name already exists: {self.qualify(name)}",
                    "already_exists",
                )
            doc = {
                "id": new_id("ml_"),
                "name": self.qualify(name),
                "type": str(kind).rstrip("s"),
                "base_model_id": base_id,
                "description": body.get("description"),
                "created": time.time(),
            }
            self.store.put("model", doc)
        return self.model_wire(doc)

    def model(self, model_id: str) -> dict[str, Any]:
        doc = self.store.get("model", model_id)
        if doc is None:
            raise V2Error(404, f"model {model_id} not found", "not_found")
        return doc

    def update_model(self, model_id: str, body: dict[str, Any], mask: str | None) -> dict[str, Any]:
        with self.lock:
            doc = self.model(model_id)
            fields = (
                [f.strip() for f in mask.split(",")]
                if mask
                else ["name", "description", "visibility"]
            )
            if "baseModelId" in body or "base_model_id" in fields:
                raise V2Error(400, "the base model cannot be changed")
            changed = False
            for field in fields:
                if field not in ("name", "description", "visibility"):
                    raise V2Error(400, f"unknown field in update mask: {field}")
                if field in body:
                    value = body[field]
                    doc[field] = (
                        self.qualify(value.rsplit("/", 1)[-1]) if field == "name" else value
                    )
                    changed = True
            if not changed:
                raise V2Error(400, "no fields to update")
            self.store.put("model", doc)
        return self.model_wire(doc)

    def delete_model(self, model_id: str) -> None:
        with self.lock:
            self.model(model_id)
            for dep in self.store.all("deployment"):
                if dep["model_id"] == model_id and self.deployment_state(dep)[0] != DEP + "STOPPED":
                    raise V2Error(400, "the model is referenced by a live deployment")
            if any(a["adapter_model_id"] == model_id for a in self.store.all("attachment")):
                raise V2Error(400, "the model is referenced by a live deployment")
            self.store.remove("model", model_id)

    def revisions(self, model_id: str) -> list[dict[str, Any]]:
        self.model(model_id)
        revs = [r for r in self.store.all("revision") if r["model_id"] == model_id]
        return [self.revision_wire(r) for r in reversed(revs)]

    def revision_wire(self, rev: dict[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "revisionId": rev["id"],
            "createdAt": rfc3339(rev["created"]),
            "validationStatus": REV + rev["validation"],
        }
        if rev.get("validated_at"):
            wire["lastValidatedAt"] = rfc3339(rev["validated_at"])
        if rev.get("errors"):
            wire["validationErrors"] = rev["errors"]
        return wire

    def files(self, model_id: str, revision_id: str | None) -> dict[str, Any]:
        self.model(model_id)
        revs = [r for r in self.store.all("revision") if r["model_id"] == model_id]
        if revision_id:
            revs = [r for r in revs if r["id"] == revision_id]
            if not revs:
                raise V2Error(404, f"revision {revision_id} not found")
        if not revs:
            return {"object": "list", "data": [], "next_cursor": None}
        rev = revs[-1]
        return {
            "object": "list",
            "data": rev["files"],
            "next_cursor": None,
            "revisionId": rev["id"],
            "revisionCreatedAt": rfc3339(rev["created"]),
            "totalSizeBytes": str(sum(int(f["sizeBytes"]) for f in rev["files"])),
        }

    # -- remote uploads -----------------------------------------------------------------------

    def upload_wire(self, doc: dict[str, Any]) -> dict[str, Any]:
        wire = {
            "id": doc["id"],
            "createdAt": rfc3339(doc["created"]),
            "modelId": doc["model_id"],
            "projectId": self.config.project_id,
            "remoteUrl": doc["remote_url"],
            "status": UP + doc["status"],
            "restartCount": doc["restarts"],
            "maxRestarts": self.config.max_restarts,
            "updatedAt": rfc3339(doc["updated"]),
        }
        if doc.get("message"):
            wire["statusMessage"] = doc["message"]
        return wire

    def create_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        model_id, url = body.get("modelId"), body.get("remoteUrl")
        if not isinstance(model_id, str) or not model_id:
            raise V2Error(400, "model_id is required")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise V2Error(400, "remote_url must be a Hugging Face repo URL or a presigned URL")
        self.model(model_id)
        now = time.time()
        doc: dict[str, Any] = {
            "id": new_id("job_"),
            "model_id": model_id,
            "remote_url": url,
            "status": "PENDING",
            "message": "queued",
            "restarts": 0,
            "created": now,
            "updated": now,
            "events": [],
        }
        with self.lock:
            self.store.put("upload", doc)
            self._event(doc["id"], "LEVEL_INFO", "upload.queued", "remote upload queued")
        token = body.get("token") if isinstance(body.get("token"), str) else None
        self.runner.pool_submit(self._run_upload, doc["id"], token)
        return self.upload_wire(doc)

    def upload(self, upload_id: str) -> dict[str, Any]:
        doc = self.store.get("upload", upload_id)
        if doc is None:
            raise V2Error(404, f"remote upload {upload_id} not found", "not_found")
        return doc

    def events(self, upload_id: str) -> list[dict[str, Any]]:
        return list(self.upload(upload_id)["events"])

    def _event(self, upload_id: str, level: str, kind: str, message: str) -> None:
        with self.lock:
            doc = self.store.get("upload", upload_id)
            if doc is None:
                return
            doc["events"].append(
                {
                    "id": f"evt_{len(doc['events']) + 1:04d}{secrets.token_hex(2)}",
                    "createdAt": rfc3339(time.time()),
                    "level": level,
                    "type": kind,
                    "message": message,
                }
            )
            self.store.put("upload", doc)

    def _set(self, upload_id: str, status: str, message: str, restarts: int | None = None) -> None:
        with self.lock:
            doc = self.store.get("upload", upload_id)
            if doc is None:
                return
            doc.update(status=status, message=message, updated=time.time())
            if restarts is not None:
                doc["restarts"] = restarts
            self.store.put("upload", doc)

    def _sleep(self, seconds: float) -> bool:
        return not self._stop.wait(max(0.0, seconds))

    def resume(self) -> None:
        """After a restart with persistent state, run the uploads that were in flight again."""
        for doc in self.store.all("upload"):
            if doc["status"] in ("PENDING", "RUNNING", "ERROR"):
                self.runner.pool_submit(self._run_upload, doc["id"], None)

    def _run_upload(self, upload_id: str, token: str | None) -> None:
        total = self.config.job_seconds
        try:
            doc = self.upload(upload_id)
            if not self._sleep(total * 0.2):
                return
            for attempt in range(1, self.config.upload_error_restarts + 1):
                self._set(upload_id, "ERROR", f"importer crashed; restarting ({attempt})", attempt)
                self._event(upload_id, "LEVEL_WARN", "upload.restarted", f"restart {attempt}")
                if attempt > self.config.max_restarts:
                    self._event(upload_id, "LEVEL_ERROR", "upload.failed", "out of restarts")
                    self._set(upload_id, "ERROR", "importer failed after the maximum restarts")
                    return
                if not self._sleep(total * 0.1):
                    return
            self._set(upload_id, "RUNNING", "downloading")
            self._event(upload_id, "LEVEL_INFO", "download.started", "downloading the weights")
            with tempfile.TemporaryDirectory(prefix="emulator-v2-") as tmp:
                try:
                    files = self.runner.fetch(doc["remote_url"], token, Path(tmp))
                except JobFailure as exc:
                    self._event(upload_id, "LEVEL_ERROR", "download.failed", str(exc))
                    self._set(upload_id, "FAILED", str(exc))
                    return
                self._event(
                    upload_id,
                    "LEVEL_INFO",
                    "download.completed",
                    f"downloaded {len(files)} file(s)",
                )
                if not self._sleep(total * 0.3):
                    return
                model = self.store.get("model", doc["model_id"])
                errors = revision_errors(
                    files, base_by_weights(model["base_model_id"]) if model else None
                )
                listing = file_listing(files)
            now = time.time()
            revision = {
                "id": new_id("rv_"),
                "model_id": doc["model_id"],
                "created": now,
                "validation": "PENDING",
                "errors": [],
                "files": listing,
            }
            self.store.put("revision", revision)
            self._event(upload_id, "LEVEL_INFO", "upload.succeeded", f"created {revision['id']}")
            self._set(upload_id, "SUCCEEDED", "revision created")
            self._event(upload_id, "LEVEL_INFO", "validation.started", "validating the revision")
            if not self._sleep(total * 0.3):
                return
            # the event first, then the state, as a service logs what it is about to publish
            if errors:
                self._event(
                    upload_id,
                    "LEVEL_ERROR",
                    "validation.failed",
                    "; ".join(e["message"] for e in errors),
                )
            else:
                self._event(upload_id, "LEVEL_INFO", "validation.succeeded", "revision is valid")
            revision.update(
                validation="FAILED" if errors else "SUCCESS",
                errors=errors,
                validated_at=time.time(),
            )
            self.store.put("revision", revision)
        except Exception as exc:  # an emulator bug must still end the upload, visibly
            logger.exception("emulator upload %s crashed", upload_id)
            self._set(upload_id, "FAILED", f"internal error: {exc}")

    # -- endpoints ----------------------------------------------------------------------------

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        doc = self.store.get("endpoint", endpoint_id)
        if doc is None:
            raise V2Error(404, f"endpoint {endpoint_id} not found", "not_found")
        return doc

    def endpoint_wire(self, doc: dict[str, Any]) -> dict[str, Any]:
        deps = [d for d in self.store.all("deployment") if d["endpoint_id"] == doc["id"]]
        total = sum(e["weight"] for e in doc["traffic"]) or 1.0
        return {
            "id": doc["id"],
            "name": doc["name"],
            "projectId": self.config.project_id,
            "endpointType": "ENDPOINT_TYPE_DEDICATED",
            "etag": f"e-{doc['etag']}",
            "trafficSplit": doc["traffic"],
            "deployments": [
                {
                    "id": d["id"],
                    "name": self.deployment_name(doc, d),
                    "autoscaling": {"minReplicas": d["min"], "maxReplicas": d["max"]},
                    "createdAt": rfc3339(d["created"]),
                    "estimatedEffectiveTrafficShare": sum(
                        e["weight"] for e in doc["traffic"] if e["deploymentId"] == d["id"]
                    )
                    / total,
                    "model": d["model_path"],
                    "modelId": d["model_id"],
                    "state": self.deployment_state(d)[0],
                    "trafficMode": "TRAFFIC_MODE_LIVE",
                    "desiredReplicas": d["max"],
                    "hardware": d["hardware"],
                    "readyReplicas": self.deployment_state(d)[1],
                }
                for d in deps
            ],
            "visibility": "VISIBILITY_PRIVATE",
            "createdAt": rfc3339(doc["created"]),
            "updatedAt": rfc3339(doc["updated"]),
        }

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise V2Error(400, "name must be 1-63 lowercase letters, digits or dashes")
        with self.lock:
            if any(e["bare"] == name for e in self.store.all("endpoint")):
                raise V2Error(
                    409, f"endpoint {self.qualify(name)} already exists", "already_exists"
                )
            now = time.time()
            doc = {
                "id": new_id("ep_"),
                "bare": name,
                "name": self.qualify(name),
                "etag": 1,
                "traffic": [],
                "created": now,
                "updated": now,
            }
            self.store.put("endpoint", doc)
        return self.endpoint_wire(doc)

    @staticmethod
    def _etag(doc: dict[str, Any], given: Any) -> None:
        if given in (None, ""):
            return
        if given != f"e-{doc['etag']}":
            raise V2Error(
                409, f"etag mismatch: the resource was modified (current etag e-{doc['etag']})"
            )

    def update_endpoint(
        self, endpoint_id: str, body: dict[str, Any], mask: str | None
    ) -> dict[str, Any]:
        with self.lock:
            doc = self.endpoint(endpoint_id)
            self._etag(doc, body.get("etag"))
            fields = (
                [f.strip() for f in mask.split(",")]
                if mask
                else [k for k in ("trafficSplit", "name", "visibility") if k in body]
            )
            if not fields or not any(f in body for f in fields):
                raise V2Error(400, "no fields to update")
            if "trafficSplit" in fields:
                split = body.get("trafficSplit")
                if not isinstance(split, list):
                    raise V2Error(400, "trafficSplit must be a list")
                mine = {
                    d["id"] for d in self.store.all("deployment") if d["endpoint_id"] == endpoint_id
                }
                for entry in split:
                    if not isinstance(entry, dict) or entry.get("deploymentId") not in mine:
                        raise V2Error(400, f"traffic split names an unknown deployment: {entry}")
                    if not isinstance(entry.get("weight"), (int, float)) or entry["weight"] < 0:
                        raise V2Error(400, "traffic split weights must be non-negative numbers")
                doc["traffic"] = [
                    {"deploymentId": e["deploymentId"], "weight": float(e["weight"])} for e in split
                ]
            doc["etag"] += 1
            doc["updated"] = time.time()
            self.store.put("endpoint", doc)
        return self.endpoint_wire(doc)

    def delete_endpoint(self, endpoint_id: str, etag: str | None) -> None:
        with self.lock:
            doc = self.endpoint(endpoint_id)
            self._etag(doc, etag)
            if any(d["endpoint_id"] == endpoint_id for d in self.store.all("deployment")):
                raise V2Error(400, "the endpoint still has deployments; delete them first")
            self.store.remove("endpoint", endpoint_id)

    # -- deployments --------------------------------------------------------------------------

    def deployment_name(self, endpoint: dict[str, Any], dep: dict[str, Any]) -> str:
        return f"{endpoint['name']}/{dep['bare']}"

    def deployment_state(
        self, dep: dict[str, Any], now: float | None = None
    ) -> tuple[str, int, str]:
        """(state, ready replicas, message), derived from the clock."""
        now = time.time() if now is None else now
        cfg = self.config
        if dep["max"] == 0:
            if now - (dep.get("stopped_at") or now) < cfg.stop_seconds:
                return DEP + "STOPPING", 0, "scaling to zero"
            return DEP + "STOPPED", 0, "stopped (0 replicas)"
        up = now - dep["started"]
        if dep.get("fails") and up >= cfg.deploy_seconds:
            return DEP + "FAILED", 0, "replicas failed to start: CUDA out of memory loading weights"
        if dep.get("never_ready") or up < cfg.deploy_seconds:
            return DEP + "PROVISIONING", 0, "provisioning GPUs"
        return DEP + "READY", max(dep["min"], 1), "ready"

    def deployment(self, endpoint_id: str, deployment_id: str) -> dict[str, Any]:
        self.endpoint(endpoint_id)
        dep = self.store.get("deployment", deployment_id)
        if dep is None or dep["endpoint_id"] != endpoint_id:
            raise V2Error(404, f"deployment {deployment_id} not found", "not_found")
        return dep

    def deployment_wire(self, dep: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint(dep["endpoint_id"])
        state, ready, message = self.deployment_state(dep)
        return {
            "id": dep["id"],
            "name": self.deployment_name(endpoint, dep),
            "endpointId": dep["endpoint_id"],
            "projectId": self.config.project_id,
            "model": dep["model_path"],
            "modelId": dep["model_id"],
            "modelRevisionId": dep["model_revision_id"],
            "config": dep["config_path"],
            "configId": dep["config_id"],
            "hardware": dep["hardware"],
            "etag": f"e-{dep['etag']}",
            "trafficMode": "TRAFFIC_MODE_LIVE",
            "status": {
                "state": state,
                "message": message,
                "readyReplicas": ready,
                "scheduledReplicas": dep["max"],
                "details": {
                    "region": [
                        {"region": c, "readyReplicas": ready, "scheduledReplicas": dep["max"]}
                        for c in self.config.clusters
                    ]
                },
            },
            "autoscaling": {"minReplicas": dep["min"], "maxReplicas": dep["max"]},
            "desiredReplicas": dep["max"],
            "inactiveTimeout": dep["inactive_timeout"],
            "createdAt": rfc3339(dep["created"]),
            "updatedAt": rfc3339(dep["updated"]),
        }

    def create_deployment(
        self, endpoint_id: str, body: dict[str, Any], validate_only: bool
    ) -> dict[str, Any]:
        endpoint = self.endpoint(endpoint_id)
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise V2Error(400, "name must be 1-63 lowercase letters, digits or dashes")
        autoscaling = body.get("autoscaling")
        if not isinstance(autoscaling, dict):
            raise V2Error(400, "autoscaling is required")
        lo, hi = autoscaling.get("minReplicas", 0), autoscaling.get("maxReplicas")
        if not isinstance(lo, int) or not isinstance(hi, int) or hi < 1 or not 0 <= lo <= hi:
            raise V2Error(
                400, "autoscaling needs 0 <= minReplicas <= maxReplicas, maxReplicas >= 1"
            )
        timeout = body.get("inactiveTimeout")
        if timeout is not None and (
            not isinstance(timeout, int) or not (timeout == 0 or 30 <= timeout <= 1440)
        ):
            raise V2Error(400, "inactive_timeout must be 0 or between 30 and 1440 minutes")
        config_ref = body.get("config") or body.get("configId")
        found = base_by_config(str(config_ref or "").rsplit("/", 1)[-1])
        if found is None:
            raise V2Error(400, f"config {config_ref!r} not found")
        config_base, mode = found
        model_ref = str(body.get("model") or body.get("modelId") or "")
        parts = model_ref.strip("/").split("/")
        model_id = parts[parts.index("models") + 1] if "models" in parts else model_ref
        if not model_id:
            raise V2Error(400, "model is required")
        base = base_by_weights(model_id)
        serves_base: BaseSpec | None
        if base is not None:
            revision_id = base.revision_id
            model_path = f"{base.weights_path}/revisions/{revision_id}"
            serves_base = base
        else:
            record = self.store.get("model", model_id)
            if record is None:
                raise V2Error(404, f"model {model_id} not found")
            revs = [
                r
                for r in self.store.all("revision")
                if r["model_id"] == model_id and r["validation"] != "FAILED"
            ]
            if not revs:
                raise V2Error(400, "the model has no revisions to deploy")
            revision_id = revs[-1]["id"]
            if "revisions" in parts:
                revision_id = parts[parts.index("revisions") + 1]
            model_path = (
                f"projects/{self.config.project_id}/models/{model_id}/revisions/{revision_id}"
            )
            serves_base = base_by_weights(record["base_model_id"])
        if serves_base is None or serves_base.name != config_base.name:
            raise V2Error(
                400, f"config {config_ref} is for {config_base.name}, not for the model's base"
            )
        with self.lock:
            existing = [d for d in self.store.all("deployment") if d["endpoint_id"] == endpoint_id]
            if any(d["bare"] == name for d in existing):
                raise V2Error(409, f"deployment {name} already exists on {endpoint['name']}")
            now = time.time()
            dep = {
                "id": new_id("dep_"),
                "endpoint_id": endpoint_id,
                "bare": name,
                "model_path": model_path,
                "model_id": model_id,
                "model_revision_id": revision_id,
                "config_id": config_base.config_id(mode),
                "config_path": f"projects/{PLATFORM_PROJECT}/configs/{config_base.config_id(mode)}",
                "adapter_mode": mode,
                "hardware": f"{config_base.gpu_count}x {config_base.gpu_type}",
                "min": lo,
                "max": hi,
                "inactive_timeout": timeout,
                "started": now,
                "stopped_at": None,
                "fails": self.config.deployment_fails,
                "never_ready": self.config.deploy_never_ready,
                "etag": 1,
                "created": now,
                "updated": now,
            }
            if validate_only:
                return self.deployment_wire_unsaved(endpoint, dep)
            self.store.put("deployment", dep)
            endpoint["etag"] += 1
            self.store.put("endpoint", endpoint)
        return self.deployment_wire(dep)

    def deployment_wire_unsaved(
        self, endpoint: dict[str, Any], dep: dict[str, Any]
    ) -> dict[str, Any]:
        self.store.put("deployment", dep)
        try:
            return self.deployment_wire(dep)
        finally:
            self.store.remove("deployment", dep["id"])

    def update_deployment(
        self, endpoint_id: str, deployment_id: str, body: dict[str, Any], mask: str | None
    ) -> dict[str, Any]:
        with self.lock:
            dep = self.deployment(endpoint_id, deployment_id)
            self._etag(dep, body.get("etag"))
            fields = (
                [f.strip() for f in mask.split(",")]
                if mask
                else [k for k in ("autoscaling", "inactiveTimeout", "name") if k in body]
            )
            if not fields or not any(f in body for f in fields):
                raise V2Error(400, "no fields to update")
            if "autoscaling" in fields:
                auto = body.get("autoscaling") or {}
                lo, hi = auto.get("minReplicas", 0), auto.get("maxReplicas", 0)
                if not isinstance(lo, int) or not isinstance(hi, int) or not 0 <= lo <= hi:
                    raise V2Error(400, "autoscaling needs 0 <= minReplicas <= maxReplicas")
                now = time.time()
                if hi == 0 and dep["max"] > 0:
                    dep["stopped_at"] = now
                elif hi > 0 and dep["max"] == 0:
                    dep["started"] = now
                dep["min"], dep["max"] = lo, hi
            if "inactiveTimeout" in fields and "inactiveTimeout" in body:
                dep["inactive_timeout"] = body["inactiveTimeout"]
            dep["etag"] += 1
            dep["updated"] = time.time()
            self.store.put("deployment", dep)
        return self.deployment_wire(dep)

    def delete_deployment(self, endpoint_id: str, deployment_id: str, etag: str | None) -> None:
        with self.lock:
            dep = self.deployment(endpoint_id, deployment_id)
            self._etag(dep, etag)
            endpoint = self.endpoint(endpoint_id)
            if any(e["deploymentId"] == deployment_id for e in endpoint["traffic"]):
                raise V2Error(
                    400,
                    "the deployment is referenced by an endpoint's traffic split and cannot be "
                    "deleted",
                )
            if self.deployment_state(dep)[0] != DEP + "STOPPED":
                raise V2Error(400, "the deployment must be stopped (scaled to 0/0) before deletion")
            for att in self.store.all("attachment"):
                if att["deployment_id"] == deployment_id:
                    self.store.remove("attachment", att["id"])
            self.store.remove("deployment", deployment_id)
            endpoint["etag"] += 1
            self.store.put("endpoint", endpoint)

    # -- adapter attachments ------------------------------------------------------------------

    def attachments_on(self, deployment_id: str) -> list[dict[str, Any]]:
        return [a for a in self.store.all("attachment") if a["deployment_id"] == deployment_id]

    def attachment_wire(self, att: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        dep = self.store.get("deployment", att["deployment_id"])
        dep_ready = dep is not None and self.deployment_state(dep, now)[0] == DEP + "READY"
        model = self.store.get("model", att["adapter_model_id"])
        elapsed = now - att["pinned_at"]
        load = self.config.adapter_load_seconds
        pods = self.config.pods_per_cluster
        rows = []
        for cluster in self.config.clusters:
            row: dict[str, Any] = {
                "adapterModelId": att["adapter_model_id"],
                "clusterId": cluster,
                "failedPodCount": 0,
                "readyPodCount": 0,
                "totalPodCount": pods,
                "updatedAt": rfc3339(now),
            }
            if model:
                row["adapterModel"] = model["name"]
            if att.get("removing_at") is not None:
                row["state"] = ADP + "REMOVING"
            elif not dep_ready or elapsed < load * 0.3:
                row["state"] = ADP + "PENDING"
                row["realizedEtag"] = f"e-{att['etag'] - 1}"
            elif elapsed < load:
                row["state"] = ADP + "LOADING"
                row["realizedEtag"] = f"e-{att['etag'] - 1}"
            elif att.get("fails"):
                row.update(
                    state=ADP + "FAILED",
                    failedPodCount=pods,
                    adapterValid=False,
                    adapterValidReason="probe failed: adapter output diverged from its reference",
                    message="adapter failed to load",
                )
            else:
                row.update(
                    state=ADP + "READY",
                    readyPodCount=pods,
                    adapterValid=True,
                    realizedEtag=f"e-{att['etag']}",
                    realizedRevisionId=att["desired_revision_id"],
                    loadedAt=rfc3339(att["pinned_at"] + load),
                )
            rows.append(row)
        wire = {
            "id": att["id"],
            "adapterModelId": att["adapter_model_id"],
            "desiredRevisionId": att["desired_revision_id"],
            "etag": f"e-{att['etag']}",
            "perCluster": rows,
        }
        if model:
            wire["adapterModel"] = f"projects/{self.config.project_id}/models/{model['id']}"
        return wire

    def attachment_ready(self, att: dict[str, Any]) -> bool:
        rows = self.attachment_wire(att)["perCluster"]
        return all(r["state"] == ADP + "READY" for r in rows)

    def attach(self, endpoint_id: str, deployment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            dep = self.deployment(endpoint_id, deployment_id)
            model_id = body.get("adapterModelId")
            if not isinstance(model_id, str) or not model_id:
                raise V2Error(400, "adapter_model_id is required")
            record = self.store.get("model", model_id)
            if record is None or record["type"] != "adapter":
                raise V2Error(404, f"adapter model {model_id} not found")
            if dep["adapter_mode"] == "ADAPTER_MODE_DISABLED":
                raise V2Error(
                    400,
                    "the deployment's config has adapter_mode disabled; it cannot serve adapters",
                )
            if record["base_model_id"] != dep["model_id"]:
                raise V2Error(
                    400,
                    f"adapter base model {record['base_model_id']} does not match the "
                    f"deployment's model {dep['model_id']}",
                )
            revs = [r for r in self.store.all("revision") if r["model_id"] == model_id]
            wanted = body.get("adapterRevisionId")
            if wanted:
                revs = [r for r in revs if r["id"] == wanted]
                if not revs:
                    raise V2Error(404, f"revision {wanted} not found")
            if not revs:
                raise V2Error(400, "the model has no revisions to deploy")
            revision = revs[-1]
            if revision["validation"] != "SUCCESS":
                raise V2Error(
                    400, f"revision {revision['id']} is not valid ({revision['validation']})"
                )
            current = self.attachments_on(deployment_id)
            if any(a["adapter_model_id"] == model_id for a in current):
                raise V2Error(409, f"adapter {model_id} is already attached to this deployment")
            base = base_by_weights(dep["model_id"])
            capacity = base.max_adapters if base else 16
            if len(current) >= capacity:
                if not body.get("force"):
                    raise V2Error(
                        400,
                        f"the deployment is at adapter capacity ({capacity}); set force to evict "
                        "the oldest adapter",
                    )
                oldest = min(current, key=lambda a: a["pinned_at"])
                self.store.remove("attachment", oldest["id"])
            att = {
                "id": new_id("dad_"),
                "endpoint_id": endpoint_id,
                "deployment_id": deployment_id,
                "adapter_model_id": model_id,
                "desired_revision_id": revision["id"],
                "etag": 1,
                "pinned_at": time.time(),
                "fails": self.config.adapter_load_fails,
            }
            self.store.put("attachment", att)
        return self.attachment_wire(att)

    def attachment(
        self, endpoint_id: str, deployment_id: str, attachment_id: str
    ) -> dict[str, Any]:
        self.deployment(endpoint_id, deployment_id)
        att = self.store.get("attachment", attachment_id)
        if att is None or att["deployment_id"] != deployment_id:
            raise V2Error(404, f"adapter attachment {attachment_id} not found", "not_found")
        return att

    def repin(
        self, endpoint_id: str, deployment_id: str, attachment_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.lock:
            att = self.attachment(endpoint_id, deployment_id, attachment_id)
            self._etag(att, body.get("etag") or "missing")
            revision = body.get("adapterRevisionId")
            if not any(
                r["id"] == revision and r["model_id"] == att["adapter_model_id"]
                for r in self.store.all("revision")
            ):
                raise V2Error(404, f"revision {revision} not found")
            att.update(desired_revision_id=revision, etag=att["etag"] + 1, pinned_at=time.time())
            self.store.put("attachment", att)
        return self.attachment_wire(att)

    def detach(
        self, endpoint_id: str, deployment_id: str, attachment_id: str, etag: str | None
    ) -> None:
        with self.lock:
            att = self.attachment(endpoint_id, deployment_id, attachment_id)
            self._etag(att, etag or "missing")
            self.store.remove("attachment", attachment_id)

    # -- inference routing --------------------------------------------------------------------

    def route(self, model: str) -> tuple[str, str] | V2Error | None:
        """(served identity, deployment id) for a v2 model string; None when the string is
        not a v2 one (the v1 resolver takes over); a V2Error to answer."""
        slug = f"{self.slug}/"
        if not model.startswith(slug):
            return None
        adapter_part = model
        if self.config.adapter_model_form == "endpoint:name" and ":" in model:
            endpoint_part, _, adapter_part = model.partition(":")
            return self._route_adapter(adapter_part, endpoint_part)
        if ":" in model:
            return _not_available(model)
        rest = model[len(slug) :]
        for record in self.store.all("model"):
            if record["name"] == model and record["type"] == "adapter":
                if self.config.adapter_model_form != "name":
                    return _not_available(model)
                return self._route_adapter(adapter_part, None)
        endpoint_name, _, dep_name = rest.partition("/")
        endpoint = next((e for e in self.store.all("endpoint") if e["bare"] == endpoint_name), None)
        if endpoint is None:
            return _not_available(model)
        deps = {
            d["id"]: d for d in self.store.all("deployment") if d["endpoint_id"] == endpoint["id"]
        }
        if dep_name:
            pinned = next((d for d in deps.values() if d["bare"] == dep_name), None)
            if pinned is None:
                return _not_available(model)
            candidates = [pinned]
        else:
            weighted = [
                deps[e["deploymentId"]]
                for e in sorted(endpoint["traffic"], key=lambda e: -e["weight"])
                if e["weight"] > 0 and e["deploymentId"] in deps
            ]
            if not weighted:
                return self._not_serving(model, list(deps.values()), "receiving traffic")
            candidates = weighted
        ready = [d for d in candidates if self.deployment_state(d)[0] == DEP + "READY"]
        if not ready:
            return self._not_serving(model, candidates, "with a ready replica")
        dep = ready[0]
        return self._identity(dep), dep["id"]

    def _not_serving(self, model: str, deps: list[dict[str, Any]], lacking: str) -> V2Error:
        """Together's two answers: every deployment stopped (not ready), or none to route to."""
        stopped = (DEP + "STOPPED", DEP + "STOPPING")
        if deps and all(self.deployment_state(d)[0] in stopped for d in deps):
            return V2Error(
                400,
                f"endpoint {model} is not ready: all deployments are stopped",
                "endpoint_not_ready",
            )
        return V2Error(
            400, f"endpoint {model} has no deployment {lacking}", "endpoint_not_configured"
        )

    def _identity(self, dep: dict[str, Any]) -> str:
        base = base_by_weights(dep["model_id"])
        if base is not None:
            return base.name
        record = self.store.get("model", dep["model_id"])
        return record["name"] if record else dep["model_id"]

    def _route_adapter(
        self, adapter_name: str, endpoint_part: str | None
    ) -> tuple[str, str] | V2Error:
        record = next(
            (
                r
                for r in self.store.all("model")
                if r["name"] == adapter_name and r["type"] == "adapter"
            ),
            None,
        )
        if record is None:
            return _not_available(adapter_name)
        for att in self.store.all("attachment"):
            if att["adapter_model_id"] != record["id"]:
                continue
            dep = self.store.get("deployment", att["deployment_id"])
            if dep is None:
                continue
            if endpoint_part is not None:
                endpoint = self.store.get("endpoint", dep["endpoint_id"])
                if endpoint is None or endpoint["name"] != endpoint_part:
                    continue
            if self.attachment_ready(att) and self.deployment_state(dep)[0] == DEP + "READY":
                return record["name"], dep["id"]
        return _not_available(adapter_name)


def _not_available(model: str) -> V2Error:
    return V2Error(
        404,
        f"Unable to access model {model}. Please visit https://api.together.ai/models to view "
        "the list of supported models.",
        "model_not_available",
    )


# -- Together-side checks of an uploaded adapter (independent of the plugin's validator) -------


def file_listing(files: dict[str, Path]) -> list[dict[str, str]]:
    out = []
    for name, path in sorted(files.items()):
        if not path.is_file():
            continue
        out.append(
            {
                "path": name,
                "sizeBytes": str(path.stat().st_size),
                "hash": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    return out


def revision_errors(files: dict[str, Path], base: BaseSpec | None) -> list[dict[str, str]]:
    """The ``validationErrors`` Together would record for these files on ``base``."""

    def error(rule: str, message: str) -> dict[str, str]:
        return {"rule": rule, "severity": "error", "message": message}

    try:
        check_adapter_files(files)
    except JobFailure as exc:
        return [error("adapter_files", str(exc))]
    config = json.loads(files["adapter_config.json"].read_bytes())
    errors = []
    if base is None:
        return [error("base_model", "the record's base model is not a supported LoRA base")]
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        errors.append(error("lora_rank", f"rank {rank!r} is not a positive integer"))
    elif rank > base.max_rank:
        errors.append(error("lora_rank", f"rank {rank} exceeds maximum {base.max_rank}"))
    modules = config.get("target_modules")
    names = [modules] if isinstance(modules, str) else modules if isinstance(modules, list) else []
    if modules != "all-linear":
        outside = sorted({str(m).rsplit(".", 1)[-1] for m in names} - set(base.target_modules))
        if outside:
            errors.append(
                error(
                    "target_modules",
                    f"target modules {', '.join(outside)} are not supported on {base.name} "
                    f"(supported: {', '.join(base.target_modules)})",
                )
            )
    recorded = config.get("base_model_name_or_path")
    other = next((b for b in BASES if b is not base and b.matches(recorded)), None)
    if other is not None:
        errors.append(
            error(
                "base_model",
                f"adapter was trained on {recorded}, but the record's base is {base.name}",
            )
        )
    if base.dims is not None:
        errors += _shape_errors(files["adapter_model.safetensors"], base, error)
    return errors


def _shape_errors(
    path: Path, base: BaseSpec, error: Callable[[str, str], dict[str, str]]
) -> list[dict[str, str]]:
    assert base.dims is not None
    with path.open("rb") as fh:
        (n,) = __import__("struct").unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    problems: list[str] = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        match = _TENSOR.search(key)
        if not match:
            continue
        layer, proj, ab = int(match.group(1)), match.group(2), match.group(3)
        if layer >= base.dims.layers:
            problems.append(f"{key}: layer {layer} >= {base.dims.layers}")
            continue
        expected = base.dims.in_out(proj)
        shape = info.get("shape") or []
        if expected is None or len(shape) != 2:
            continue
        fan_in, fan_out = expected
        if (ab == "A" and shape[1] != fan_in) or (ab == "B" and shape[0] != fan_out):
            problems.append(f"{key}: shape {shape} does not fit {base.name}")
    if problems:
        return [error("tensor_shapes", f"{len(problems)} tensor(s) do not fit: {problems[0]}")]
    return []
