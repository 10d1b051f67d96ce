"""The Together credentials block: the only place an API key is stored."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr, field_validator

if TYPE_CHECKING:
    from prefect_together_lora.client import AsyncTogetherClient, TogetherClient
    from prefect_together_lora.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.together.xyz"
PROJECT_URL = "https://github.com/prefect-together-lora/prefect-together-lora"


def normalize_base_url(url: str) -> str:
    """The API host: request paths carry their version, so a trailing ``/v1`` (the 2.x SDK's
    convention) or ``/`` is dropped."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https:// (got {url!r})")
    for suffix in ("/v1", "/v0"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


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
        description="API host, e.g. https://api.together.xyz; a trailing /v1 is accepted.",
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

    @field_validator("api_key")
    @classmethod
    def _non_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("api_key is empty: set TOGETHER_API_KEY or fill the block's API key.")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> TogetherCredentials:
        """Build from ``TOGETHER_API_KEY`` and ``TOGETHER_BASE_URL`` (overrides win)."""
        key = overrides.pop("api_key", None) or os.environ.get("TOGETHER_API_KEY")
        if not key:
            raise ValueError(
                "TOGETHER_API_KEY is not set. Export it, or pass a TogetherCredentials block."
            )
        base_url = overrides.pop("base_url", None) or os.environ.get(
            "TOGETHER_BASE_URL", DEFAULT_BASE_URL
        )
        return cls(api_key=SecretStr(key), base_url=base_url, **overrides)

    @property
    def key_id(self) -> str:
        """A non-secret identifier of the key (for cache keys and reports)."""
        digest = hashlib.sha256(self.api_key.get_secret_value().encode()).hexdigest()
        return f"key-{digest[:12]}"

    @property
    def account_key(self) -> str:
        """Identifies the account a cache entry belongs to: host plus key id, never the key."""
        return f"{self.base_url}|{self.key_id}"

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

    def get_sync_client(self, retry: RetryPolicy | None = None) -> TogetherClient:
        from prefect_together_lora.client import TogetherClient

        return TogetherClient(**self._client_kwargs(retry))

    def get_async_client(self, retry: RetryPolicy | None = None) -> AsyncTogetherClient:
        from prefect_together_lora.client import AsyncTogetherClient

        return AsyncTogetherClient(**self._client_kwargs(retry))
