"""Where an adapter lives: a source text parsed into one of the registered kinds
(:mod:`~prefect_together_lora.sources.registry`), each a typed model that resolves, reads and
stages itself (:class:`~prefect_together_lora.sources.base.AdapterSource`)."""

from __future__ import annotations

from prefect_together_lora.sources.archive import archive_format
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.hub import HubSource
from prefect_together_lora.sources.local_archive import LocalArchiveSource
from prefect_together_lora.sources.local_folder import LocalFolderSource
from prefect_together_lora.sources.registry import KINDS, accepted_forms, parse_source
from prefect_together_lora.sources.s3_archive import S3ArchiveSource
from prefect_together_lora.sources.s3_folder import S3FolderSource
from prefect_together_lora.sources.url import UrlSource

__all__ = [
    "KINDS",
    "AdapterSource",
    "HubSource",
    "LocalArchiveSource",
    "LocalFolderSource",
    "ResolvedSource",
    "S3ArchiveSource",
    "S3FolderSource",
    "SourceContext",
    "UrlSource",
    "accepted_forms",
    "archive_format",
    "parse_source",
]
