"""The v2 backend: Together's project-scoped API, the default.

register a model record → remote upload from the presigned URL or the Hub → the new revision is
validated → served on a dedicated deployment (the adapter attached to a LoRA-capable deployment
of its base, or merged into its own) → inference on the inference host → teardown in the order
the API requires (detach; scale to 0/0 and wait STOPPED; out of the traffic split; delete the
deployment; delete the endpoint; delete the record).

Every create is reconciled against what exists first, with names derived from the request, so a
re-run after a lost response or a killed worker follows the same upload, endpoint, deployment
and attachment instead of making (and paying for) a second one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from prefect_together_lora.client import source_identity
from prefect_together_lora.errors import (
    ConflictError,
    InvalidRequestError,
    ModelNameTaken,
    ServerError,
    ServingFailed,
    TogetherConnectionError,
    TogetherError,
    TogetherLoraError,
)
from prefect_together_lora.polling import Pace, poll_until
from prefect_together_lora.reporting import slug
from prefect_together_lora.schemas import Finding
from prefect_together_lora.together.backend import (
    AdapterHandle,
    AdapterSpec,
    Backend,
    ImportEvent,
    ImportPoll,
    ImportState,
    ImportStatus,
    Resource,
    ServingOptions,
    ServingReport,
    TeardownMode,
)
from prefect_together_lora.together.v2_client import TogetherV2Client
from prefect_together_lora.together.v2_schemas import (
    Attachment,
    Deployment,
    DeploymentProfile,
    Endpoint,
    RemoteUpload,
    SupportedModel,
    TrafficEntry,
)

UPLOAD_PREFIX = "REMOTE_UPLOAD_STATUS_"
REVISION_PREFIX = "REVISION_VALIDATION_STATUS_"
READY, FAILED, STOPPED = (
    "DEPLOYMENT_STATE_READY",
    "DEPLOYMENT_STATE_FAILED",
    "DEPLOYMENT_STATE_STOPPED",
)
ADAPTER_READY, ADAPTER_FAILED = "ADAPTER_LOAD_STATE_READY", "ADAPTER_LOAD_STATE_FAILED"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
_LEVELS = {
    "LEVEL_DEBUG": "debug",
    "LEVEL_INFO": "info",
    "LEVEL_WARN": "warn",
    "LEVEL_ERROR": "error",
}


def bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


_T = TypeVar("_T")
# a create that failed this way may have happened (a lost answer) or exist already (a 409)
LOST: tuple[type[TogetherError], ...] = (ServerError, TogetherConnectionError)
EXISTS_OR_LOST: tuple[type[TogetherError], ...] = (ConflictError, InvalidRequestError, *LOST)


def create_or_adopt(
    create: Callable[[], _T],
    find: Callable[[], _T | None],
    failures: tuple[type[TogetherError], ...],
) -> tuple[_T, TogetherError | None]:
    """``create()``; when it fails with one of ``failures``, read back what exists instead
    (creates are never re-sent). Returns the value and the failure that led to the read-back
    (None when this call created it); re-raises when nothing is found."""
    try:
        return create(), None
    except failures as exc:
        found = find()
        if found is None:
            raise
        return found, exc


def _same_source(upload: RemoteUpload, wanted: str) -> bool:
    url = upload.remote_url
    return url is not None and source_identity(url.get_secret_value()) == wanted


def _live(upload: RemoteUpload) -> bool:
    """Not failed: pending, running, succeeded, or erroring with restarts left."""
    return upload.status != UPLOAD_PREFIX + "FAILED" and not _exhausted(upload)


def _exhausted(upload: RemoteUpload) -> bool:
    """ERROR with no restart left: failed for good."""
    return (
        upload.status == UPLOAD_PREFIX + "ERROR"
        and upload.max_restarts is not None
        and (upload.restart_count or 0) >= upload.max_restarts
    )


# how long a run that found the record made by a racing identical run waits for its upload
RACE_WAIT_S = 5.0


class V2Backend(Backend):
    """Together's v2 project API behind the backend interface."""

    api = "v2"

    def __init__(
        self,
        client: TogetherV2Client,
        inference_url: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._inference_url = inference_url
        self._sleep = sleep
        self._clock = clock
        self._supported: dict[str, list[SupportedModel]] = {}

    def close(self) -> None:
        self.client.close()

    @property
    def inference_url(self) -> str:
        return self._inference_url

    def preflight(self) -> str:
        slug = self.client.project_slug  # GET /v3/whoami: key, project and host at once
        self.client.list_models()  # the project in every path answers for this key
        return f"v2 project {self.client.project_id} ({slug}) at {self.client.base_url}"

    # -- base model -------------------------------------------------------------------------

    def _catalog(self, base_model: str) -> list[SupportedModel]:
        if base_model not in self._supported:
            self._supported[base_model] = self.client.list_supported(search=base_model)
        return self._supported[base_model]

    def resolve_base_model(self, base_model: str) -> str:
        """An ``ml_`` id passes through; a name is matched exactly against the deployment
        profiles' ``modelName`` (as Together's CLI does), then against the catalog name."""
        base_model = base_model.strip()
        if base_model.startswith("ml_"):
            return base_model
        if base_model.startswith("arch_"):
            raise ValueError(
                f"'{base_model}' is a catalog (architecture) id; v2 needs the base's weights id "
                "(ml_…) or its name, e.g. meta-llama/Meta-Llama-3.1-8B-Instruct-Reference."
            )
        catalog = self._catalog(base_model)
        ids = {
            p.weights_id
            for m in catalog
            for p in m.deployment_profiles
            if p.model_name == base_model and p.weights_id
        } or {m.base_model_id for m in catalog if m.name == base_model and m.base_model_id}
        if len(ids) == 1:
            return ids.pop()
        if len(ids) > 1:
            raise ValueError(
                f"Base model '{base_model}' matches several weights ({', '.join(sorted(ids))}); "
                "pass the ml_ id you mean as base_model."
            )
        near = sorted({m.name for m in catalog})[:8]
        raise ValueError(
            f"Base model '{base_model}' is not in Together's supported models for this project"
            + (f" (close: {', '.join(near)})" if near else "")
            + ". Pick a base from GET /v2/supported-models, or pass its ml_ id."
        )

    def _profiles(self, handle: AdapterHandle) -> list[DeploymentProfile]:
        catalog = self._catalog(handle.base_model)
        return [
            p
            for m in catalog
            for p in m.deployment_profiles
            if p.weights_id == handle.base_model_id
            or (m.base_model_id == handle.base_model_id and not p.weights_id)
        ]

    # -- import -----------------------------------------------------------------------------

    def import_adapter(self, spec: AdapterSpec) -> AdapterHandle:
        base_id = self.resolve_base_model(spec.base_model)
        name = bare(spec.name)
        record, created = self._ensure_record(name, base_id, spec.description)
        wanted = source_identity(spec.source_url.get_secret_value())
        upload = self._existing_upload(record.id, wanted, record.name)
        if upload is None and not created:
            upload = self._racing_upload(record.id, wanted)
        reused = upload is not None
        if upload is None:
            upload = self._first_of_twins(
                record.id, wanted, self._create_upload(record.id, spec, wanted)
            )
        return AdapterHandle(
            api="v2",
            name=name,
            model_name=record.name,
            job_id=upload.id,
            base_model=spec.base_model,
            model_id=record.id,
            base_model_id=base_id,
            project_id=self.client.project_id,
            reused=reused,
            created_record=created,
        )

    def _ensure_record(self, name: str, base_id: str, description: str | None) -> tuple[Any, bool]:
        record, failure = create_or_adopt(
            lambda: self.client.create_model(name, base_id, description),
            lambda: self._find_record(name),
            EXISTS_OR_LOST,
        )
        if failure is None:
            return record, True
        if record.base_model_id not in (None, base_id) or not record.is_adapter:
            raise ModelNameTaken(
                f"Model name '{record.name}' already exists in this project with base "
                f"{record.base_model_id} and weights type {record.weights.type}; this adapter "
                f"needs base {base_id}. Choose another name, or name_suffix='auto'."
            ) from None
        # a lost answer to our own create is still ours; an existing name is not
        exists = isinstance(failure, ConflictError) or "already exists" in failure.message.lower()
        return record, not exists

    def _find_record(self, name: str) -> Any:
        for record in self.client.list_models():
            if record.name == name or bare(record.name) == name:
                return record
        return None

    def _uploads_of(self, model_id: str) -> list[RemoteUpload]:
        """The record's remote uploads, newest first."""
        mine = [u for u in self.client.list_uploads() if u.model_id == model_id]
        mine.sort(key=lambda u: u.created_at.timestamp() if u.created_at else 0.0, reverse=True)
        return mine

    def _existing_upload(self, model_id: str, wanted: str, model_name: str) -> RemoteUpload | None:
        """Our earlier upload of the same source for this record (followed, never repeated);
        a record already holding other weights is a name clash (v2 keeps no versions)."""
        for upload in self._uploads_of(model_id):
            if _same_source(upload, wanted) and _live(upload):
                return upload
            if not _same_source(upload, wanted) and upload.status == UPLOAD_PREFIX + "SUCCEEDED":
                raise ModelNameTaken(
                    f"Model '{model_name}' already holds weights uploaded from "
                    f"{upload.source_redacted}; Together keeps no adapter versions. Choose "
                    "another name, or name_suffix='auto' (one name per content)."
                )
        return None

    def _racing_upload(self, model_id: str, wanted: str) -> RemoteUpload | None:
        """Together has no idempotency key: when identical publishes race, only the run whose
        create made the record posts the upload, and the others (their create answered 409)
        wait a moment for it. A record with no upload at all is such a moment; one with an
        older, failed upload is a re-run, which goes ahead at once."""
        end = self._clock() + RACE_WAIT_S
        while True:
            uploads = self._uploads_of(model_id)
            if uploads:
                return next((u for u in uploads if _same_source(u, wanted) and _live(u)), None)
            if self._clock() >= end:
                return None
            self._sleep(0.2)

    def _first_of_twins(self, model_id: str, wanted: str, mine: RemoteUpload) -> RemoteUpload:
        """If racing runs still posted two uploads of the same source, every run follows the
        oldest, so all of them end with the same import (the other one cannot be cancelled
        through the API; it downloads the same weights and is never followed)."""
        twins = [u for u in self._uploads_of(model_id) if _same_source(u, wanted) and _live(u)]
        if not twins:
            return mine
        return min(twins, key=lambda u: (u.created_at.timestamp() if u.created_at else 0.0, u.id))

    def _create_upload(self, model_id: str, spec: AdapterSpec, wanted: str) -> RemoteUpload:
        upload, _ = create_or_adopt(
            lambda: self.client.create_upload(model_id, spec.source_url, spec.hf_token),
            lambda: next(
                (u for u in self._uploads_of(model_id) if _same_source(u, wanted) and _live(u)),
                None,
            ),
            LOST,
        )
        return upload

    def poll_import(self, handle: AdapterHandle, cursor: str | None = None) -> ImportPoll:
        upload = self.client.get_upload(handle.job_id)
        raw = upload.status.removeprefix(UPLOAD_PREFIX)
        status = self._import_status(handle, upload, raw)
        # events after the status: whatever led to it is in the timeline of this very poll
        page, _ = self.client.upload_events(handle.job_id, cursor)
        fresh = [e for e in page if e.id != cursor]
        events = [
            ImportEvent(
                at=e.created_at,
                level=_LEVELS.get(e.level, "info"),
                kind=e.type,
                message=e.message,
                status=upload.status,
            )
            for e in fresh
        ]
        next_cursor = fresh[-1].id if fresh else cursor
        return ImportPoll(status=status, events=events, cursor=next_cursor)

    def _import_status(self, handle: AdapterHandle, upload: RemoteUpload, raw: str) -> ImportStatus:
        retries = upload.restart_count
        if raw == "PENDING":
            return ImportStatus(state=ImportState.PENDING, raw=upload.status, retries=retries)
        if raw == "RUNNING" or (raw == "ERROR" and not _exhausted(upload)):
            return ImportStatus(
                state=ImportState.RUNNING,
                raw=upload.status,
                message=upload.status_message,
                retries=retries,
            )
        if raw != "SUCCEEDED":  # FAILED, ERROR out of restarts, or a status we do not know
            known = raw in ("FAILED", "ERROR")
            return ImportStatus(
                state=ImportState.FAILED if known else ImportState.RUNNING,
                raw=upload.status,
                message=upload.status_message
                or (
                    f"remote upload {raw.lower()} after {retries or 0} restart(s)"
                    if known
                    else None
                ),
                retries=retries,
            )
        revisions = self.client.list_revisions(handle.model_id or "")
        if not revisions:
            return ImportStatus(
                state=ImportState.RUNNING,
                raw=upload.status,
                message="upload succeeded; waiting for the revision",
            )
        newest = revisions[0]
        validation = (newest.validation_status or "").removeprefix(REVISION_PREFIX)
        if validation == "PENDING":
            return ImportStatus(
                state=ImportState.RUNNING,
                raw=f"{upload.status}/{newest.validation_status}",
                message="Together is validating the revision",
                revision_id=newest.revision_id,
            )
        if validation in ("FAILED", "ERROR"):
            findings = [
                Finding(
                    code=f"TOGETHER_{(e.rule or 'validation').upper()}",
                    severity="error" if (e.severity or "error").lower() == "error" else "warning",
                    message=e.message or "rejected by Together's validation",
                )
                for e in newest.validation_errors
            ]
            reason = (
                "; ".join(f.message for f in findings)
                if findings
                else f"Together's validator answered {validation}"
            )
            return ImportStatus(
                state=ImportState.FAILED,
                raw=f"{upload.status}/{newest.validation_status}",
                message=f"revision {newest.revision_id} failed validation: {reason}",
                revision_id=newest.revision_id,
                findings=findings,
            )
        # SUCCESS or no validation status: confirm the files landed, as Together's guide says
        files = {f.path for f in self.client.list_files(handle.model_id or "", newest.revision_id)}
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            return ImportStatus(
                state=ImportState.FAILED,
                raw=upload.status,
                message=f"revision {newest.revision_id} lacks {', '.join(missing)}",
                revision_id=newest.revision_id,
                findings=[
                    Finding(
                        code="TOGETHER_FILES_MISSING",
                        severity="error",
                        message=f"Together's revision has no {', '.join(missing)}.",
                    )
                ],
            )
        return ImportStatus(
            state=ImportState.SUCCEEDED,
            raw=f"{upload.status}/{newest.validation_status or 'no validation status'}",
            revision_id=newest.revision_id,
        )

    # -- serving ----------------------------------------------------------------------------

    def serve(self, handle: AdapterHandle, options: ServingOptions) -> ServingReport:
        if options.mode == "none":
            return ServingReport(mode="none", inference_url=self.inference_url, state="not served")
        if handle.model_id is None:
            raise ServingFailed("The adapter has no v2 model id; import it with the v2 backend.")
        resources: list[Resource] = []
        started = self._clock()
        try:
            if options.mode == "attach":
                report = self._serve_attached(handle, options, resources)
            else:
                report = self._serve_deployed(handle, options, resources)
        except ServingFailed as exc:
            raise ServingFailed(exc.reason, [*resources, *exc.resources]) from None
        except (TogetherLoraError, ValueError) as exc:
            message = exc.message if isinstance(exc, TogetherLoraError) else str(exc)
            raise ServingFailed(f"Serving failed: {message}", resources) from None
        report.ready_after_s = round(self._clock() - started, 3)
        return report

    def _pace(self, options: ServingOptions) -> Pace:
        return Pace(options.poll_initial_s, 1.5, options.poll_max_s, options.ready_timeout_s, 30.0)

    def _find_endpoint(self, wanted: str) -> Endpoint:
        if wanted.startswith("ep_"):
            return self.client.get_endpoint(wanted)
        for endpoint in self.client.list_endpoints():
            if endpoint.name == wanted or bare(endpoint.name) == bare(wanted):
                return endpoint
        raise ServingFailed(
            f"No endpoint '{wanted}' in project {self.client.project_id}. Name an existing "
            "endpoint (id or name) for serving mode 'attach', or use mode 'deploy'."
        )

    def _find_deployment(self, endpoint: Endpoint, wanted: str | None) -> Deployment:
        deployments = self.client.list_deployments(endpoint.id)
        if wanted:
            for dep in deployments:
                if wanted in (dep.id, dep.name, bare(dep.name)):
                    return dep
            raise ServingFailed(
                f"Endpoint {endpoint.name} has no deployment '{wanted}' "
                f"(it has: {', '.join(bare(d.name) for d in deployments) or 'none'})."
            )
        live = [d for d in deployments if endpoint.weight_of(d.id) > 0 and d.state != STOPPED]
        if len(live) != 1:
            raise ServingFailed(
                f"Endpoint {endpoint.name} has {len(live)} live deployments "
                f"({', '.join(bare(d.name) for d in live) or 'none'}); name the one to attach "
                "to with serving.deployment."
            )
        return live[0]

    def _serve_attached(
        self, handle: AdapterHandle, options: ServingOptions, resources: list[Resource]
    ) -> ServingReport:
        if not options.endpoint:
            raise ServingFailed(
                "Serving mode 'attach' needs serving.endpoint: the id or name of a running "
                "endpoint whose deployment has LoRA enabled."
            )
        endpoint = self._find_endpoint(options.endpoint)
        deployment = self._find_deployment(endpoint, options.deployment)
        self._check_lora_capable(deployment, handle)
        if deployment.state != READY or endpoint.weight_of(deployment.id) <= 0:
            deployment = self._wait_deployment(endpoint, deployment.id, options)
        attachment = self._attach(endpoint, deployment, handle, options, resources)
        self._wait_attachment(endpoint, deployment, attachment, handle, options)
        return self._report("attach", handle, options, endpoint, deployment, attachment, resources)

    def _check_lora_capable(self, deployment: Deployment, handle: AdapterHandle) -> None:
        if deployment.model_id and deployment.model_id != handle.base_model_id:
            raise ServingFailed(
                f"Deployment {deployment.name} serves {deployment.model_id}, but the adapter's "
                f"base is {handle.base_model_id} ({handle.base_model}); attach it to a "
                "deployment of its own base."
            )
        mode = (
            self.client.get_config(deployment.config_id).adapter_mode
            if deployment.config_id
            else None
        )
        if mode not in ("fixed", "dynamic"):
            raise ServingFailed(
                f"Deployment {deployment.name} runs config {deployment.config_id} with adapter "
                f"mode '{mode or 'unknown'}': it cannot host LoRA adapters. Use a deployment "
                "created from a LoRA profile (adapter mode fixed or dynamic), or serving mode "
                "'deploy'."
            )

    def _attach(
        self,
        endpoint: Endpoint,
        deployment: Deployment,
        handle: AdapterHandle,
        options: ServingOptions,
        resources: list[Resource],
    ) -> Attachment:
        assert handle.model_id is not None
        for existing in self.client.list_attachments(endpoint.id, deployment.id):
            if existing.adapter_model_id == handle.model_id:
                resources.append(self._attachment_resource(existing, endpoint, deployment, False))
                return existing
        try:
            attachment = self.client.attach_adapter(
                endpoint.id, deployment.id, handle.model_id, handle.revision_id, options.force
            )
        except TogetherError as exc:
            text = exc.message
            hint = (
                " Set serving.force=true to evict the oldest adapter, or use another deployment."
                if "capacity" in text.lower() and not options.force
                else ""
            )
            raise ServingFailed(
                f"Attaching {handle.model_name} to {deployment.name} was refused: {text}.{hint}"
            ) from None
        resources.append(self._attachment_resource(attachment, endpoint, deployment, True))
        return attachment

    @staticmethod
    def _attachment_resource(
        attachment: Attachment, endpoint: Endpoint, deployment: Deployment, created: bool
    ) -> Resource:
        return Resource(
            kind="attachment",
            id=attachment.id,
            name=f"{bare(deployment.name)}:{attachment.adapter_model_id}",
            created=created,
            parent=deployment.id,
            grandparent=endpoint.id,
        )

    def _wait_attachment(
        self,
        endpoint: Endpoint,
        deployment: Deployment,
        attachment: Attachment,
        handle: AdapterHandle,
        options: ServingOptions,
    ) -> Attachment:
        def fetch() -> Attachment:
            current = self.client.get_attachment(endpoint.id, deployment.id, attachment.id)
            for row in current.per_cluster:
                if row.state == ADAPTER_FAILED or row.adapter_valid is False:
                    reason = (
                        row.adapter_valid_reason or row.message or row.reason or "no reason given"
                    )
                    raise ServingFailed(
                        f"Adapter {handle.model_name} failed to load on {deployment.name} "
                        f"(cluster {row.cluster_id}): {reason}"
                    )
            return current

        def ready(current: Attachment) -> bool:
            return bool(current.per_cluster) and all(
                row.state == ADAPTER_READY
                and row.ready_pod_count == row.total_pod_count
                and row.realized_revision_id == current.desired_revision_id
                and row.realized_etag == current.etag
                and row.adapter_valid is not False
                for row in current.per_cluster
            )

        def timed_out(waited: float, last: Attachment | None) -> Exception:
            states = ", ".join(
                f"{r.cluster_id}={r.state}" for r in (last.per_cluster if last else [])
            )
            return ServingFailed(
                f"Adapter {handle.model_name} not loaded on {deployment.name} after "
                f"{waited:.0f}s ({states or 'no cluster reported'})."
            )

        return poll_until(
            fetch, ready, self._pace(options), timed_out, sleep=self._sleep, clock=self._clock
        )

    def _wait_deployment(
        self, endpoint: Endpoint, deployment_id: str, options: ServingOptions
    ) -> Deployment:
        def fetch() -> Deployment:
            dep = self.client.get_deployment(endpoint.id, deployment_id)
            if dep.state == FAILED:
                raise ServingFailed(
                    f"Deployment {dep.name} FAILED: {dep.status.message or 'no message'}."
                )
            return dep

        def timed_out(waited: float, last: Deployment | None) -> Exception:
            return ServingFailed(
                f"Deployment {last.name if last else deployment_id} not READY after "
                f"{waited:.0f}s (state {last.state if last else 'unknown'}); it keeps billing "
                "while it provisions."
            )

        return poll_until(
            fetch,
            lambda d: d.state == READY,
            self._pace(options),
            timed_out,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _pick_profile(self, handle: AdapterHandle, options: ServingOptions) -> DeploymentProfile:
        profiles = self._profiles(handle)
        if options.profile:
            chosen = [p for p in profiles if p.profile_id == options.profile]
            if not chosen:
                raise ServingFailed(
                    f"No deployment profile '{options.profile}' for {handle.base_model} "
                    f"(profiles: {', '.join(p.profile_id for p in profiles) or 'none'})."
                )
            profile = chosen[0]
            if not options.merge and not profile.lora_capable:
                raise ServingFailed(
                    f"Profile {profile.profile_id} has adapter mode {profile.adapter_mode}; "
                    "attaching needs a LoRA profile (fixed or dynamic), or set serving.merge."
                )
            return profile
        ranked = sorted(
            (p for p in profiles if p.lora_capable or options.merge),
            key=lambda p: {"ADAPTER_MODE_DYNAMIC": 0, "ADAPTER_MODE_FIXED": 1}.get(
                p.adapter_mode or "", 2
            ),
        )
        if not ranked:
            listed = ", ".join(f"{p.profile_id}={p.adapter_mode}" for p in profiles) or "none"
            raise ServingFailed(
                f"{handle.base_model} has no LoRA-capable deployment profile on Together "
                f"(profiles: {listed}). "
                "Set serving.merge=true to merge the adapter into its own deployment, or pick "
                "another base."
            )
        return ranked[0]

    def _serve_deployed(
        self, handle: AdapterHandle, options: ServingOptions, resources: list[Resource]
    ) -> ServingReport:
        profile = self._pick_profile(handle, options)
        endpoint_name = options.endpoint or slug(f"{handle.name}-ep", 60)
        endpoint = self._ensure_endpoint(endpoint_name, resources, owned=not options.endpoint)
        if options.merge:
            model = f"projects/{self.client.project_id}/models/{handle.model_id}" + (
                f"/revisions/{handle.revision_id}" if handle.revision_id else ""
            )
        else:
            model = profile.model
        dep_name = options.deployment or ("merged" if options.merge else "lora-base")
        deployment = self._ensure_deployment(endpoint, dep_name, model, profile, options, resources)
        endpoint = self.client.set_traffic(
            endpoint.id,
            lambda split: (
                split
                if any(e.deployment_id == deployment.id and e.weight > 0 for e in split)
                else [
                    *(e for e in split if e.deployment_id != deployment.id),
                    TrafficEntry(deployment_id=deployment.id, weight=100),
                ]
            ),
        )
        deployment = self._wait_deployment(endpoint, deployment.id, options)
        if options.merge:
            return self._report("merge", handle, options, endpoint, deployment, None, resources)
        attachment = self._attach(endpoint, deployment, handle, options, resources)
        self._wait_attachment(endpoint, deployment, attachment, handle, options)
        return self._report("attach", handle, options, endpoint, deployment, attachment, resources)

    def _ensure_endpoint(self, name: str, resources: list[Resource], owned: bool) -> Endpoint:
        # 409 (exists) or a lost create: the same name is ours to reuse, as `tg` does
        endpoint, failure = create_or_adopt(
            lambda: self.client.create_endpoint(name),
            lambda: next((e for e in self.client.list_endpoints() if bare(e.name) == name), None),
            EXISTS_OR_LOST,
        )
        created = failure is None or owned
        resources.append(
            Resource(kind="endpoint", id=endpoint.id, name=endpoint.name, created=created)
        )
        return endpoint

    def _ensure_deployment(
        self,
        endpoint: Endpoint,
        name: str,
        model: str,
        profile: DeploymentProfile,
        options: ServingOptions,
        resources: list[Resource],
    ) -> Deployment:
        def named() -> Deployment | None:
            deployments = self.client.list_deployments(endpoint.id)
            return next((d for d in deployments if bare(d.name) == name), None)

        existing = named()
        if existing is not None:  # an earlier attempt's: scale it back up if it was stopped
            deployment, created = existing, resources[-1].created
            if deployment.state == STOPPED and deployment.autoscaling.max_replicas == 0:
                deployment = self.client.scale_deployment(
                    endpoint.id, deployment.id, options.min_replicas, options.max_replicas
                )
        else:
            deployment, _ = create_or_adopt(
                lambda: self.client.create_deployment(
                    endpoint.id,
                    name,
                    model=model,
                    config=profile.config,
                    min_replicas=options.min_replicas,
                    max_replicas=options.max_replicas,
                    inactive_timeout=options.inactive_timeout_min,
                ),
                named,
                LOST,
            )
            created = True
        resources.append(
            Resource(
                kind="deployment",
                id=deployment.id,
                name=deployment.name,
                created=created,
                bills=True,
                parent=endpoint.id,
            )
        )
        return deployment

    def _report(
        self,
        mode: str,
        handle: AdapterHandle,
        options: ServingOptions,
        endpoint: Endpoint,
        deployment: Deployment,
        attachment: Attachment | None,
        resources: list[Resource],
    ) -> ServingReport:
        merged = mode == "merge"
        notes = []
        if merged and not options.base_model_string:
            notes.append(
                "merged serving has no base on the same deployment: the evaluation's base arm "
                "needs serving.base_model_string."
            )
        return ServingReport(
            mode=mode,
            inference_url=self.inference_url,
            adapter_model=options.adapter_model_string
            or (endpoint.name if merged else handle.model_name),
            base_model=options.base_model_string or (None if merged else endpoint.name),
            endpoint_id=endpoint.id,
            endpoint_name=endpoint.name,
            deployment_id=deployment.id,
            deployment_name=deployment.name,
            attachment_id=attachment.id if attachment else None,
            hardware=deployment.hardware or None,
            min_replicas=deployment.autoscaling.min_replicas,
            max_replicas=deployment.autoscaling.max_replicas,
            inactive_timeout_min=deployment.inactive_timeout,
            state=deployment.state,
            resources=self._dedupe(resources),
            notes=notes,
        )

    @staticmethod
    def _dedupe(resources: list[Resource]) -> list[Resource]:
        seen: dict[tuple[str, str], Resource] = {}
        for r in resources:
            seen.setdefault((r.kind, r.id), r)
        return list(seen.values())

    # -- teardown ---------------------------------------------------------------------------

    def teardown(
        self,
        handle: AdapterHandle,
        resources: list[Resource],
        mode: TeardownMode,
        *,
        keep_model: bool = False,
    ) -> list[Resource]:
        resources = self._dedupe(resources)
        if (
            handle.created_record
            and handle.model_id
            and not any(r.kind == "model" for r in resources)
        ):
            # a record holds weights, not replicas: it costs nothing while it stays
            resources.append(
                Resource(
                    kind="model",
                    id=handle.model_id,
                    name=handle.model_name,
                    created=True,
                    state="kept",
                )
            )
        if mode == "keep":
            return [r.model_copy(update={"state": r.state or "live"}) for r in resources]
        errors: list[str] = []
        out: dict[tuple[str, str], Resource] = {(r.kind, r.id): r for r in resources}

        def step(resource: Resource, action: Callable[[], None], state: str) -> None:
            try:
                action()
            except TogetherError as exc:
                if exc.status_code == 404:  # already gone (an earlier teardown got this far)
                    out[(resource.kind, resource.id)] = resource.model_copy(
                        update={"state": state, "bills": False}
                    )
                    return
                errors.append(f"{resource.kind} {resource.name or resource.id}: {exc.message}")
            except TogetherLoraError as exc:
                errors.append(f"{resource.kind} {resource.name or resource.id}: {exc.message}")
            else:
                out[(resource.kind, resource.id)] = resource.model_copy(
                    update={"state": state, "bills": False}
                )

        mine = [r for r in resources if r.created]
        deployments = [r for r in mine if r.kind == "deployment"]
        if mode == "delete":
            for att in (r for r in mine if r.kind == "attachment"):
                step(
                    att,
                    partial(
                        self.client.detach_adapter, att.grandparent or "", att.parent or "", att.id
                    ),
                    "detached",
                )
        for dep in deployments:
            step(dep, partial(self._stop, dep), "stopped")
        if mode == "delete":
            for dep in deployments:
                if out[(dep.kind, dep.id)].state != "stopped":
                    continue
                step(dep, partial(self._delete_deployment, dep), "deleted")
            for ep in (r for r in mine if r.kind == "endpoint"):
                if any(
                    out[(d.kind, d.id)].state != "deleted" for d in deployments if d.parent == ep.id
                ):
                    errors.append(f"endpoint {ep.name}: kept, a deployment on it was not deleted")
                    continue
                step(ep, partial(self.client.delete_endpoint, ep.id), "deleted")
            if not keep_model:
                for model in (r for r in mine if r.kind == "model"):
                    step(model, partial(self.client.delete_model, model.id), "deleted")
        final = list(out.values())
        if errors:
            raise ServingFailed(
                "Teardown incomplete; still on Together: "
                + "; ".join(errors)
                + ". Re-run with the same parameters to finish it, or remove them in Together's "
                "console.",
                final,
            )
        return final

    def _stop(self, dep: Resource) -> None:
        """Scale to 0/0 and wait until STOPPED (no replica bills after this)."""
        endpoint_id = dep.parent or ""
        current = self.client.get_deployment(endpoint_id, dep.id)
        if current.state != STOPPED:
            self.client.scale_deployment(endpoint_id, dep.id, 0, 0)
        poll_until(
            lambda: self.client.get_deployment(endpoint_id, dep.id),
            lambda d: d.state == STOPPED,
            Pace(0.2, 1.5, 10.0, 1800.0, 0.0),
            lambda waited, last: ServingFailed(
                f"Deployment {dep.name} still {last.state if last else '?'} {waited:.0f}s "
                "after scaling to 0/0."
            ),
            sleep=self._sleep,
            clock=self._clock,
        )

    def _delete_deployment(self, dep: Resource) -> None:
        endpoint_id = dep.parent or ""
        self.client.set_traffic(
            endpoint_id, lambda split: [e for e in split if e.deployment_id != dep.id]
        )
        self.client.delete_deployment(endpoint_id, dep.id)

    # -- fleet ------------------------------------------------------------------------------

    def published(self, name: str) -> str | None:
        record = self._find_record(bare(name))
        if record is None:
            return None
        revisions = self.client.list_revisions(record.id)
        if revisions and (revisions[0].validation_status or "").endswith("SUCCESS"):
            return f"already published ({record.id}, revision {revisions[0].revision_id})"
        uploads = [u for u in self.client.list_uploads() if u.model_id == record.id]
        if any(u.status.removeprefix(UPLOAD_PREFIX) in ("PENDING", "RUNNING") for u in uploads):
            return f"upload in progress ({record.id})"
        return None
