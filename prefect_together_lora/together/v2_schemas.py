"""Pydantic models of Together's v2 (project-scoped) payloads.

camelCase on the wire (``populate_by_name`` lets code use snake_case), int64 values as strings,
enums as prefixed UPPER_SNAKE strings kept verbatim (an unknown value is data, not a crash), and
unknown fields kept (``extra="allow"``): Together adds fields without notice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from prefect_together_lora.redaction import redact, strip_query


class _V2(BaseModel):
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, protected_namespaces=()
    )


def id_from_path(path: str | None, marker: str) -> str | None:
    """The id after ``marker`` in a resource path: ``projects/p/models/ml_1/revisions/rv_2``
    gives ``ml_1`` for ``models`` and ``rv_2`` for ``revisions``."""
    if not path:
        return None
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == marker:
            return parts[i + 1]
    return None


# --- identity --------------------------------------------------------------------------------


class Project(_V2):
    id: str
    name: str = ""
    slug: str = ""


class Whoami(_V2):
    type: str
    project: Project | None = None


# --- catalog ---------------------------------------------------------------------------------


class DeploymentProfile(_V2):
    profile_id: str = ""
    config: str = ""
    model: str = ""
    model_name: str = ""
    gpu_type: str = ""
    gpu_count: int = 0
    adapter_mode: str | None = None

    @property
    def lora_capable(self) -> bool:
        return self.adapter_mode in ("ADAPTER_MODE_FIXED", "ADAPTER_MODE_DYNAMIC")

    @property
    def weights_id(self) -> str | None:
        return id_from_path(self.model, "models")

    @property
    def config_id(self) -> str | None:
        return id_from_path(self.config, "configs")

    @property
    def hardware(self) -> str:
        return f"{self.gpu_count}x {self.gpu_type}" if self.gpu_type else "unknown hardware"


class SupportedModel(_V2):
    id: str
    name: str
    base_model_id: str = ""
    status: str = ""
    deployment_profiles: list[DeploymentProfile] = Field(default_factory=list)


class Selector(_V2):
    key: str
    value: str


class ModelConfig(_V2):
    id: str
    reference_model_id: str = ""
    selectors: list[Selector] = Field(default_factory=list)

    @property
    def adapter_mode(self) -> str | None:
        for selector in self.selectors:
            if selector.key in ("adapter_mode", "adapterMode"):
                return selector.value.lower().removeprefix("adapter_mode_")
        return None


# --- models, uploads, revisions --------------------------------------------------------------


class ModelWeights(_V2):
    type: str | None = None


class ModelRecord(_V2):
    id: str
    name: str
    project_id: str = ""
    base_model_id: str | None = None
    weights: ModelWeights = Field(default_factory=ModelWeights)
    description: str | None = None

    @property
    def is_adapter(self) -> bool:
        return self.weights.type in (None, "WEIGHTS_TYPE_ADAPTER")


class RemoteUpload(_V2):
    """A remote upload (import job). ``remote_url`` may be a presigned URL: a secret."""

    id: str
    model_id: str
    status: str
    remote_url: SecretStr | None = None
    status_message: str | None = None
    restart_count: int | None = None
    max_restarts: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("status_message")
    @classmethod
    def _no_secrets(cls, message: str | None) -> str | None:
        return redact(message) if message else message

    @property
    def source_redacted(self) -> str | None:
        return strip_query(self.remote_url.get_secret_value()) if self.remote_url else None


class UploadEvent(_V2):
    id: str
    created_at: datetime | None = None
    level: str = "LEVEL_INFO"
    message: str = ""
    type: str = ""

    @field_validator("message")
    @classmethod
    def _no_secrets(cls, message: str) -> str:
        return redact(message)


class RevisionError(_V2):
    rule: str | None = None
    severity: str | None = None
    message: str | None = None


class Revision(_V2):
    revision_id: str
    created_at: datetime | None = None
    validation_status: str | None = None
    validation_errors: list[RevisionError] = Field(default_factory=list)

    @field_validator("validation_errors", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or []


class ModelFile(_V2):
    path: str | None = None
    size_bytes: str | None = None
    hash: str | None = None


# --- serving ---------------------------------------------------------------------------------


class TrafficEntry(_V2):
    deployment_id: str
    weight: float


class Endpoint(_V2):
    id: str
    name: str
    etag: str = ""
    traffic_split: list[TrafficEntry] = Field(default_factory=list)

    def weight_of(self, deployment_id: str) -> float:
        return sum(e.weight for e in self.traffic_split if e.deployment_id == deployment_id)


class Autoscaling(_V2):
    min_replicas: int | None = None
    max_replicas: int | None = None


class DeploymentState(_V2):
    state: str = ""
    message: str = ""
    ready_replicas: int | None = None


class Deployment(_V2):
    id: str
    name: str
    endpoint_id: str = ""
    etag: str = ""
    model: str = ""
    config: str = ""
    hardware: str = ""
    status: DeploymentState = Field(default_factory=DeploymentState)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    inactive_timeout: int | None = None

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def model_id(self) -> str | None:
        return id_from_path(self.model, "models") or self.model_extra_id("modelId")

    @property
    def config_id(self) -> str | None:
        return id_from_path(self.config, "configs") or self.model_extra_id("configId")

    def model_extra_id(self, key: str) -> str | None:
        value = (self.model_extra or {}).get(key)
        return value if isinstance(value, str) else None


class ClusterStatus(_V2):
    cluster_id: str = ""
    state: str = ""
    ready_pod_count: int = 0
    failed_pod_count: int = 0
    total_pod_count: int = 0
    adapter_valid: bool | None = None
    adapter_valid_reason: str | None = None
    realized_revision_id: str | None = None
    realized_etag: str | None = None
    message: str | None = None
    reason: str | None = None


class Attachment(_V2):
    id: str
    adapter_model_id: str
    desired_revision_id: str = ""
    etag: str = ""
    per_cluster: list[ClusterStatus] = Field(default_factory=list)


class Page(_V2):
    """A cursor page: ``data`` items and ``next_cursor`` (snake, unlike everything else)."""

    data: list[dict[str, Any]] = Field(default_factory=list)
    next_cursor: str | None = Field(default=None, alias="next_cursor")
