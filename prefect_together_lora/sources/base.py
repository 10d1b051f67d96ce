"""What every kind of adapter source does, in one small interface.

A source kind is one pydantic model (its own fields, no optional fields of other kinds) that
knows how to recognise its text form, pin and fingerprint itself, read the adapter's metadata,
and, when Together cannot fetch it directly, what to stage. The flow, validation, staging and
the fleet scan call these methods and never ask which kind they hold.

To add a kind: one module under ``sources/`` with a subclass of :class:`AdapterSource`, and one
line in :data:`prefect_together_lora.sources.registry.KINDS`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field, SecretStr, SerializeAsAny

from prefect_together_lora.errors import SourceError
from prefect_together_lora.sources.archive import DEFAULT_DEADLINE_S, AdapterFiles
from prefect_together_lora.sources.s3 import DEFAULT_LIFETIME_S, make_s3_client

if TYPE_CHECKING:
    import httpx

# (name inside the archive, opener): what a staged zip is made of
StagingEntry = tuple[str, Callable[[], IO[bytes]]]


@dataclass
class SourceContext:
    """Credentials and limits for resolving and reading a source (all optional)."""

    s3_client: Any | None = None
    hf_token: str | SecretStr | None = None
    hf_endpoint: str | None = None
    http_client: httpx.Client | None = None
    expires_s: int = DEFAULT_LIFETIME_S
    sample_bytes: int = 0
    deadline_s: float = DEFAULT_DEADLINE_S

    _own_http: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def s3(self) -> Any:
        """The caller's S3 client, or one from the default boto3 chain (made once)."""
        return self.s3_client or make_s3_client()

    def http(self) -> httpx.Client:
        """The caller's HTTP client, or one made once for this context (one connection pool
        and TLS setup for resolving and reading); :meth:`close` closes it."""
        if self.http_client is not None:
            return self.http_client
        with self._lock:  # a fleet scan reads many sources from threads through one context
            if self._own_http is None:
                from prefect_together_lora.sources.ranged import safe_http_client

                self._own_http = safe_http_client(min(10.0, self.deadline_s))
        client: httpx.Client = self._own_http
        return client

    def close(self) -> None:
        if self._own_http is not None:
            self._own_http.close()
            self._own_http = None

    def __enter__(self) -> SourceContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AdapterSource(BaseModel, abc.ABC):
    """A parsed adapter location. ``display`` is safe to show; a kind's secret fields (a
    presigned URL) are :class:`SecretStr`."""

    kind: str
    display: str

    # what the kind is, for callers that must decide without asking which kind it is
    needs_staging: ClassVar[bool] = False  # Together cannot fetch it: stage it to S3 first
    uses_s3: ClassVar[bool] = False  # reading it needs the caller's AWS credentials
    is_repository: ClassVar[bool] = False  # files in a repo (layout findings name it so)
    # the text forms, for the "accepted forms" help: (example, what it is)
    forms: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    @abc.abstractmethod
    def recognise(cls, text: str) -> AdapterSource | None:
        """This kind's source for ``text``, None when the text is another kind's form; a text
        that is this kind's form but wrong raises :class:`SourceError` saying how."""

    @abc.abstractmethod
    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        """Presign, pin a revision, and fingerprint the content (what caching keys on)."""

    @abc.abstractmethod
    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        """Members, config and safetensors header: never the weights."""

    def together_url(self, resolved: ResolvedSource) -> SecretStr:
        """What Together fetches: the presigned URL (a Hub repo overrides this)."""
        if resolved.url is None:
            raise SourceError(f"{self.display} has no URL Together could fetch; stage it first.")
        return resolved.url

    def given_url(self) -> SecretStr | None:
        """A URL the user gave as the source, checked before any request is sent to it."""
        return None

    def archive_format(self) -> str | None:
        """``zip``, ``tar.gz`` or ``tar`` when the source is one archive, else None."""
        return None

    def staged_archive(self) -> Path | None:
        """A local archive staged as it is (content-addressed); None for kinds that stage a
        zip of :meth:`staging_entries`."""
        return None

    def staging_entries(
        self, ctx: SourceContext, extra_files: Sequence[str]
    ) -> Iterator[StagingEntry]:
        """The files a staged zip holds (only kinds with ``needs_staging``)."""
        raise SourceError(f"{self.display} does not need staging.")

    def moved_since(self, resolved: ResolvedSource, ctx: SourceContext) -> str | None:
        """The new revision when the source moved since ``resolved`` was pinned (a Hub
        branch that got a commit); None for content that cannot move under its name."""
        return None

    @classmethod
    def discover(cls, location: str, ctx: SourceContext) -> list[tuple[str, str]] | None:
        """(source, label) of every adapter under ``location`` for a fleet scan, or None when
        ``location`` is not a place this kind can list."""
        return None

    @staticmethod
    def parse(text: str | Path) -> AdapterSource:
        """Parse any accepted form (every registered kind is asked in turn)."""
        from prefect_together_lora.sources.registry import parse_source

        return parse_source(text)

    @staticmethod
    def s3(bucket: str, key: str) -> AdapterSource:
        return AdapterSource.parse(f"s3://{bucket}/{key}")


class ResolvedSource(BaseModel):
    """A source ready for validation and upload. ``url`` is a secret (presigned)."""

    source: SerializeAsAny[AdapterSource]
    fingerprint: str
    url: SecretStr | None = None
    expires_at: datetime | None = None
    revision_sha: str | None = None
    size_bytes: int | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def model_source(self) -> SecretStr:
        """What Together's ``model_source`` / ``remoteUrl`` gets."""
        return self.source.together_url(self)
