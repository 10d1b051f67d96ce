"""The one interface the flow, the tasks, the fleet scan, smoke and evaluation speak to Together
through: import the adapter → wait until its weights are in → serve it → call it → tear down.

Two implementations: :mod:`~prefect_together_lora.together.v2` (the project-scoped API, the
default) and :mod:`~prefect_together_lora.together.v1` (``/v1/models`` + ``/v1/jobs``, for
accounts that still have it). Everything here is plain, typed and Prefect-free; every result is
a serialisable pydantic model without secrets, so it can be persisted as a Prefect result,
shown in an artifact and read back in another process.

To add a backend: one module implementing :class:`Backend`, plus one line in
:func:`~prefect_together_lora.together.make_backend`.
"""

from __future__ import annotations

import abc
from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from prefect_together_lora.options import field_title
from prefect_together_lora.redaction import redact
from prefect_together_lora.schemas import Finding

ApiVersion = Literal["v1", "v2"]
ServingMode = Literal["deploy", "attach", "none"]
TeardownMode = Literal["keep", "scale-to-zero", "delete"]


class ImportState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (ImportState.SUCCEEDED, ImportState.FAILED)


class ImportEvent(BaseModel):
    """One line of the import timeline (a v1 status update, a v2 upload event)."""

    at: datetime | None = None
    level: Literal["debug", "info", "warn", "error"] = "info"
    kind: str = ""
    message: str = ""
    status: str | None = Field(default=None, description="The backend's status at this event.")

    @field_validator("message")
    @classmethod
    def _no_secrets(cls, message: str) -> str:
        return redact(message)


class ImportStatus(BaseModel):
    """Where the import stands, normalised across backends."""

    state: ImportState
    raw: str = Field(description="The backend's own status text (e.g. Running, _SUCCEEDED).")
    message: str | None = None
    retries: int | None = None
    revision_id: str | None = None
    findings: list[Finding] = Field(
        default_factory=list, description="Together's validation errors (v2 revisions)."
    )


class ImportPoll(BaseModel):
    """One poll: the status, the events not seen before, and where to continue the events."""

    status: ImportStatus
    events: list[ImportEvent] = Field(default_factory=list)
    cursor: str | None = None


class AdapterSpec(BaseModel):
    """What to import. Holds secrets (the presigned URL, the HF token): never persisted."""

    name: str = Field(description="The bare name asked for (no namespace).")
    source_url: SecretStr = Field(description="Presigned archive URL or Hub repo URL.")
    base_model: str = Field(description="The base as the user named it (HF-style name or ml_ id).")
    hf_token: SecretStr | None = None
    description: str | None = None


class AdapterHandle(BaseModel):
    """What exists on Together after the import was started. Serialisable, no secrets."""

    api: ApiVersion
    name: str = Field(description="The bare name asked for.")
    model_name: str = Field(description="The qualified name (v1 <user>/<name>, v2 <slug>/<name>).")
    job_id: str = Field(description="The v1 job or the v2 remote upload being followed.")
    base_model: str
    model_id: str | None = Field(default=None, description="v2 ml_… id (v1 model-… if given).")
    base_model_id: str | None = Field(default=None, description="v2 ml_… id of the base.")
    project_id: str | None = None
    revision_id: str | None = None
    reused: bool = Field(default=False, description="An earlier import was followed, not made.")
    created_record: bool = Field(default=False, description="This run created the v2 record.")


class Resource(BaseModel):
    """Something on Together the run created or used, and what state it was left in."""

    kind: Literal["model", "endpoint", "deployment", "attachment"]
    id: str
    name: str = ""
    created: bool = Field(description="Created by this run (only those are ever torn down).")
    state: str = Field(default="live", description="live, stopped, deleted, detached, kept, ...")
    bills: bool = Field(default=False, description="Costs money while it stays in this state.")
    parent: str | None = Field(default=None, description="Endpoint id of a deployment, etc.")
    grandparent: str | None = None


class ServingOptions(BaseModel):
    """How the adapter is served (v2; v1 serves serverless where the account still allows)."""

    model_config = ConfigDict(extra="forbid", field_title_generator=field_title)

    mode: ServingMode = Field(
        default="deploy",
        description="deploy: create an endpoint + deployment from the base's LoRA profile; "
        "attach: hot-load onto an existing LoRA-capable deployment you name; none: stop once "
        "Together has validated the upload (no smoke test, no evaluation).",
    )
    endpoint: str | None = Field(
        default=None,
        description="attach: the endpoint (ep_… id or name) to attach to. deploy: the name of "
        "the endpoint to create (default: <model name>-ep).",
    )
    deployment: str | None = Field(
        default=None,
        description="attach: the deployment (dep_… id or name; default: the endpoint's only "
        "live deployment). deploy: its name (default: lora-base, or merged).",
    )
    merge: bool = Field(
        default=False,
        description="deploy: merge the adapter into its own deployment instead of attaching "
        "it to a LoRA-enabled deployment of its base (no base to compare on the same hardware).",
    )
    force: bool = Field(
        default=False,
        description="attach: evict the oldest adapter when the deployment is at capacity.",
    )
    profile: str | None = Field(
        default=None,
        description="deploy: deployment profile id to use; default: the base's LoRA profile "
        "(dynamic preferred over fixed).",
    )
    min_replicas: int = Field(default=1, ge=0, le=64, description="deploy: autoscaling minimum.")
    max_replicas: int = Field(default=1, ge=1, le=64, description="deploy: autoscaling maximum.")
    inactive_timeout_min: int | None = Field(
        default=60,
        description="deploy: scale to zero after this many idle minutes (0 = never; "
        "Together accepts 30-1440). A safety net against forgotten deployments.",
    )
    adapter_model_string: str | None = Field(
        default=None,
        description="The model string adapter calls use; default: the adapter's qualified "
        "name (attached) or the endpoint name (merged).",
    )
    base_model_string: str | None = Field(
        default=None,
        description="The model string of the evaluation's base arm; default: the endpoint name "
        "(the same deployment, without the adapter).",
    )
    ready_timeout_s: float = Field(
        default=3 * 3600.0, ge=0, description="Give up waiting for READY after this long (s)."
    )
    poll_initial_s: float = Field(default=1.0, gt=0, description="First status poll (s).")
    poll_max_s: float = Field(default=15.0, gt=0, description="Longest status poll (s).")

    @field_validator("inactive_timeout_min")
    @classmethod
    def _timeout_range(cls, value: int | None) -> int | None:
        if value not in (None, 0) and not 30 <= value <= 1440:
            raise ValueError("inactive_timeout_min must be 0 (never) or between 30 and 1440")
        return value


class ServingReport(BaseModel):
    """How the adapter is served: the strings to call, where, on what, and what the run made."""

    mode: Literal["attach", "merge", "serverless", "none"]
    inference_url: str
    adapter_model: str | None = Field(default=None, description="Model string for the adapter.")
    base_model: str | None = Field(default=None, description="Model string for the base arm.")
    endpoint_id: str | None = None
    endpoint_name: str | None = None
    deployment_id: str | None = None
    deployment_name: str | None = None
    attachment_id: str | None = None
    hardware: str | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    inactive_timeout_min: int | None = None
    state: str = ""
    ready_after_s: float = 0.0
    resources: list[Resource] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Backend(abc.ABC):
    """One Together API. Implementations hold their own clients; close them with ``close``."""

    api: ApiVersion

    @abc.abstractmethod
    def preflight(self) -> str:
        """One cheap authenticated call, so a wrong URL, key or project fails in seconds,
        before anything is staged or uploaded; returns who we are, in words."""

    @abc.abstractmethod
    def resolve_base_model(self, base_model: str) -> str:
        """The id the API needs for ``base_model`` (v1: the name; v2: the ``ml_`` weights id);
        raises ``ValueError`` naming the supported choices when it is not supported."""

    @abc.abstractmethod
    def import_adapter(self, spec: AdapterSpec) -> AdapterHandle:
        """Start the import (or find our earlier one: never two for the same adapter)."""

    @abc.abstractmethod
    def poll_import(self, handle: AdapterHandle, cursor: str | None = None) -> ImportPoll:
        """The import's status and its events after ``cursor``."""

    @abc.abstractmethod
    def serve(self, handle: AdapterHandle, options: ServingOptions) -> ServingReport:
        """Make the adapter callable and wait until it answers. On failure raises
        :class:`~prefect_together_lora.errors.ServingFailed` listing what it created."""

    @abc.abstractmethod
    def teardown(
        self,
        handle: AdapterHandle,
        resources: list[Resource],
        mode: TeardownMode,
        *,
        keep_model: bool = False,
    ) -> list[Resource]:
        """Apply ``mode`` to the resources this run created (never to anything else), in the
        order the API requires; returns them with their new state. ``keep_model`` keeps the
        model record (its weights cost nothing) even when deleting."""

    @abc.abstractmethod
    def published(self, name: str) -> str | None:
        """Why ``name`` needs no new import (already imported / in progress), or None."""

    @property
    @abc.abstractmethod
    def inference_url(self) -> str:
        """The host inference calls go to."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
