"""The Together credentials block: the only place an API key is stored."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr, field_validator

from prefect_together_lora.together.settings import (
    DEFAULT_BASE_URL,
    inference_url_for,
    normalize_base_url,
)

if TYPE_CHECKING:
    from prefect_together_lora.client import AsyncTogetherClient, TogetherClient
    from prefect_together_lora.retry import RetryPolicy
    from prefect_together_lora.together.backend import ApiVersion, Backend

PROJECT_URL = "https://github.com/prefect-together-lora/prefect-together-lora"


class TogetherCredentials(CredentialsBlock):
    """Credentials and connection settings for the Together AI API.

    Example:
        Load stored credentials:
        ```python
        from prefect_together_lora import TogetherCredentials

        together_credentials_block = TogetherCredentials.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Together Credentials"
    _logo_url = f"{PROJECT_URL}/raw/main/docs/img/logo.png"  # type: ignore[assignment]
    _documentation_url = f"{PROJECT_URL}#readme"  # type: ignore[assignment]
    _description = (
        "Together AI API key and connection settings for uploading and serving LoRA adapters."
    )

    api_key: SecretStr = Field(
        default=..., title="API key", description="Together API key (TOGETHER_API_KEY)."
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description="Control-plane host, e.g. https://api.together.ai (TOGETHER_BASE_URL); a "
        "trailing /v1 is accepted.",
    )
    project_id: str | None = Field(
        default=None,
        title="Project id",
        description="Together project (proj_...) for the v2 API (TOGETHER_PROJECT_ID); default: "
        "the API key's own project, from GET /v3/whoami.",
    )
    inference_url: str | None = Field(
        default=None,
        title="Inference URL",
        description="Host of dedicated-deployment inference (TOGETHER_INFERENCE_URL); default: "
        "https://api-inference.together.ai for Together's own control plane, else the base URL.",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Per-request read timeout in seconds.")
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Connection timeout in seconds."
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="Retries of a transient HTTP failure (429, 5xx, network).",
    )

    @field_validator("base_url")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_base_url(value)

    @field_validator("inference_url")
    @classmethod
    def _normalize_inference(cls, value: str | None) -> str | None:
        return normalize_base_url(value) if value else None

    @field_validator("api_key")
    @classmethod
    def _non_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("api_key is empty: set TOGETHER_API_KEY or fill the block's API key.")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> TogetherCredentials:
        """Build from ``TOGETHER_API_KEY``, ``TOGETHER_BASE_URL``, ``TOGETHER_PROJECT_ID`` and
        ``TOGETHER_INFERENCE_URL`` (overrides win)."""
        key = overrides.pop("api_key", None) or os.environ.get("TOGETHER_API_KEY")
        if not key:
            raise ValueError(
                "TOGETHER_API_KEY is not set. Export it, or pass a TogetherCredentials block."
            )
        base_url = overrides.pop("base_url", None) or os.environ.get(
            "TOGETHER_BASE_URL", DEFAULT_BASE_URL
        )
        overrides.setdefault("project_id", os.environ.get("TOGETHER_PROJECT_ID") or None)
        overrides.setdefault("inference_url", os.environ.get("TOGETHER_INFERENCE_URL") or None)
        return cls(api_key=SecretStr(key), base_url=base_url, **overrides)

    @property
    def key_id(self) -> str:
        """A non-secret identifier of the key (for cache keys and reports)."""
        digest = hashlib.sha256(self.api_key.get_secret_value().encode()).hexdigest()
        return f"key-{digest[:12]}"

    @property
    def account_key(self) -> str:
        """Identifies the account a cache entry belongs to: host, project and key id, never
        the key."""
        return f"{self.base_url}|{self.project_id or '-'}|{self.key_id}"

    def inference_host(self, api: ApiVersion = "v2") -> str:
        """Where inference calls go: the control plane for v1, the inference host for v2."""
        return (
            self.base_url if api == "v1" else inference_url_for(self.base_url, self.inference_url)
        )

    def get_client(
        self, client_type: Literal["sync", "async"] = "sync"
    ) -> TogetherClient | AsyncTogetherClient:
        """A ready client; prefer :meth:`get_sync_client` / :meth:`get_async_client` for typing."""
        if client_type == "sync":
            return self.get_sync_client()
        if client_type == "async":
            return self.get_async_client()
        raise ValueError(f"client_type must be 'sync' or 'async', not {client_type!r}")

    def retry_policy(self, **overrides: Any) -> RetryPolicy:
        from prefect_together_lora.retry import RetryPolicy

        return RetryPolicy(**{"max_attempts": self.max_retries + 1, **overrides})

    def _client_kwargs(self, retry: RetryPolicy | None) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "retry": retry or self.retry_policy(),
        }

    def get_sync_client(
        self, retry: RetryPolicy | None = None, *, host: str | None = None
    ) -> TogetherClient:
        """A v1-shaped client (uploads, jobs, inference) on the control plane, or on ``host``
        (e.g. :meth:`inference_host`)."""
        from prefect_together_lora.client import TogetherClient

        return TogetherClient(
            **{**self._client_kwargs(retry), **({"base_url": host} if host else {})}
        )

    def get_async_client(
        self, retry: RetryPolicy | None = None, *, host: str | None = None
    ) -> AsyncTogetherClient:
        from prefect_together_lora.client import AsyncTogetherClient

        return AsyncTogetherClient(
            **{**self._client_kwargs(retry), **({"base_url": host} if host else {})}
        )

    def get_backend(
        self, api: ApiVersion = "v2", retry: RetryPolicy | None = None, **timeouts: float
    ) -> Backend:
        """The backend of ``api`` (v2: project-scoped API; v1: legacy upload API);
        ``timeouts`` (``timeout_s``, ``connect_timeout_s``) override the block's."""
        from prefect_together_lora.together import make_backend

        kwargs = {**self._client_kwargs(retry), **timeouts}
        return make_backend(
            api,
            kwargs.pop("api_key"),
            kwargs.pop("base_url"),
            project_id=self.project_id,
            inference_url=self.inference_url,
            **kwargs,
        )
