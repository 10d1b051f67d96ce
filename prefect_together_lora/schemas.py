"""Pydantic models of Together's payloads and of the reports this plugin produces.

API models are tolerant: unknown fields are kept (``extra="allow"``), optional fields cover the
minimal shapes seen in Together's docs (no ``model_id``, empty ``status_updates``, no ``args``,
flat vs nested ``data``), and an unknown job status is kept verbatim instead of failing.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator

from prefect_together_lora.redaction import redact, strip_query

if TYPE_CHECKING:
    import httpx


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- jobs ----------------------------------------------------------------------------------------


class JobStatus(str, Enum):
    """A job's status. Unknown values (e.g. ``Processing``) are kept verbatim, as non-terminal."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"

    @classmethod
    def _missing_(cls, value: object) -> JobStatus | None:
        if not isinstance(value, str) or not value:
            return None
        for member in cls:
            if member.value.lower() == value.lower():
                return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value.upper()
        pseudo._value_ = value
        return pseudo

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETE, JobStatus.FAILED)

    @property
    def is_known(self) -> bool:
        return self.value in {"Queued", "Running", "Complete", "Failed"}

    def __str__(self) -> str:
        return self.value


class StatusUpdate(_ApiModel):
    status: JobStatus
    message: str = ""
    timestamp: datetime | None = None

    @field_validator("message")
    @classmethod
    def _no_secrets(cls, message: str) -> str:
        # shown in logs, reports and results: a message quoting the source URL must not
        # carry its signature
        return redact(message)


class JobArgs(_ApiModel):
    """Arguments echoed by ``GET /jobs`` (camelCase on the wire). ``model_source`` may be a
    presigned URL, so it is a secret."""

    description: str | None = None
    model_name: str | None = Field(default=None, alias="modelName")
    model_source: SecretStr | None = Field(default=None, alias="modelSource")

    @property
    def model_source_redacted(self) -> str | None:
        if self.model_source is None:
            return None
        return strip_query(self.model_source.get_secret_value())


class Job(_ApiModel):
    job_id: str
    status: JobStatus
    type: str | None = None
    status_updates: list[StatusUpdate] = Field(default_factory=list)
    args: JobArgs | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def model_name(self) -> str | None:
        return self.args.model_name if self.args else None


# --- upload --------------------------------------------------------------------------------------


class UploadRequest(BaseModel):
    """Body of ``POST /v1/models`` (OpenAPI ``ModelUploadRequest``)."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(min_length=1)
    model_source: SecretStr
    model_type: Literal["model", "adapter"] = "adapter"
    base_model: str | None = None
    lora_model: str | None = None
    description: str | None = None
    hf_token: SecretStr | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire body, secrets unwrapped (only ever handed to the HTTP layer)."""
        body: dict[str, Any] = {
            "model_name": self.model_name,
            "model_source": self.model_source.get_secret_value(),
            "model_type": self.model_type,
            "base_model": self.base_model,
            "lora_model": self.lora_model,
            "description": self.description,
            "hf_token": self.hf_token.get_secret_value() if self.hf_token else None,
        }
        return {k: v for k, v in body.items() if v is not None}


class UploadJob(_ApiModel):
    """What ``POST /v1/models`` answered: the job to poll and the model name to call."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    job_id: str
    model_name: str
    model_id: str | None = None
    model_source: str | None = None
    message: str | None = None
    reconciled: bool = Field(
        default=False,
        description="True when the job was found in GET /jobs after a duplicate-name answer.",
    )


# --- models --------------------------------------------------------------------------------------


class ModelInfo(_ApiModel):
    id: str
    object: str | None = None
    created: int | None = None
    type: str | None = None
    display_name: str | None = None
    organization: str | None = None
    context_length: int | None = None


# --- inference -----------------------------------------------------------------------------------


class RateLimitInfo(BaseModel):
    """Rate-limit headers of an inference response (all optional; Together's set varies)."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None
    token_limit: float | None = None
    token_remaining: float | None = None
    limit_dynamic: float | None = None
    remaining_dynamic: float | None = None
    token_limit_dynamic: float | None = None
    token_remaining_dynamic: float | None = None
    retry_after_s: float | None = None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimitInfo:
        def num(*names: str) -> float | None:
            for name in names:
                value = headers.get(name)
                if value is not None:
                    try:
                        return float(value)
                    except ValueError:
                        continue
            return None

        return cls(
            limit=num("x-ratelimit-limit"),
            remaining=num("x-ratelimit-remaining"),
            reset_s=num("x-ratelimit-reset"),
            token_limit=num("x-tokenlimit-limit", "x-ratelimit-limit-tokens"),
            token_remaining=num("x-tokenlimit-remaining", "x-ratelimit-remaining-tokens"),
            limit_dynamic=num("x-ratelimit-limit-dynamic"),
            remaining_dynamic=num("x-ratelimit-remaining-dynamic"),
            token_limit_dynamic=num("x-tokenlimit-limit-dynamic"),
            token_remaining_dynamic=num("x-tokenlimit-remaining-dynamic"),
            retry_after_s=num("retry-after"),
        )

    @property
    def remaining_fraction(self) -> float | None:
        """Fraction of the request budget left (dynamic figures preferred), if known."""
        limit = self.limit_dynamic or self.limit
        remaining = self.remaining_dynamic if self.remaining_dynamic is not None else self.remaining
        if not limit or remaining is None:
            return None
        return max(0.0, min(1.0, remaining / limit))


class Usage(_ApiModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatMessage(_ApiModel):
    role: str
    content: str | None = None


class ChatChoice(_ApiModel):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None
    seed: int | None = None


class _Inference(_ApiModel):
    id: str
    object: str | None = None
    created: int | None = None
    model: str
    usage: Usage | None = None
    rate_limit: RateLimitInfo | None = Field(default=None, exclude=True)


class ChatCompletion(_Inference):
    choices: list[ChatChoice]

    @property
    def text(self) -> str:
        return (self.choices[0].message.content or "") if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class CompletionChoice(_ApiModel):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    seed: int | None = None


class Completion(_Inference):
    choices: list[CompletionChoice]

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


# --- validation reports --------------------------------------------------------------------------

Severity = Literal["error", "warning", "info"]


class Finding(BaseModel):
    """One validation result with a stable code (see docs/rules.md)."""

    code: str
    severity: Severity
    message: str
    hint: str | None = None
    path: str | None = None


class AdapterSummary(BaseModel):
    """What the adapter is, as read from its config and safetensors header."""

    rank: int | None = None
    alpha: float | None = None
    target_modules: list[str] = Field(default_factory=list)
    layers: int | None = None
    dtype: str | None = None
    parameters: int | None = None
    size_bytes: int | None = None
    base_model_name_or_path: str | None = None


class ValidationReport(BaseModel):
    """The verdict of validation: every finding, the adapter's shape, and what was read."""

    source: str = Field(description="The source, with any URL query string removed.")
    base_model: str
    findings: list[Finding] = Field(default_factory=list)
    adapter: AdapterSummary = Field(default_factory=AdapterSummary)
    fingerprint: str = Field(
        description="Content fingerprint: ETag/VersionId, commit sha or sha256."
    )
    bytes_read: int = 0
    requests: int = 0
    rules_version: str = ""

    @property
    def valid(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @field_serializer("findings")
    def _ser_findings(self, findings: list[Finding]) -> list[dict[str, Any]]:
        return [f.model_dump(exclude={"path"} if f.path is None else set()) for f in findings]
