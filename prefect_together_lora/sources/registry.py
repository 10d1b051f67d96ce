"""The registered source kinds, in the order a source text is offered to them."""

from __future__ import annotations

from pathlib import Path

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import strip_query
from prefect_together_lora.sources.base import AdapterSource, SourceContext
from prefect_together_lora.sources.hub import HubSource
from prefect_together_lora.sources.local import local_path
from prefect_together_lora.sources.local_archive import LocalArchiveSource
from prefect_together_lora.sources.local_folder import LocalFolderSource
from prefect_together_lora.sources.s3_archive import S3ArchiveSource
from prefect_together_lora.sources.s3_folder import S3FolderSource
from prefect_together_lora.sources.url import UrlSource

# A new kind: its module, and one line here (before any kind whose form would also match).
KINDS: tuple[type[AdapterSource], ...] = (
    S3ArchiveSource,
    S3FolderSource,
    HubSource,
    UrlSource,
    LocalFolderSource,
    LocalArchiveSource,
)


def accepted_forms() -> str:
    rows = [form for kind in KINDS for form in kind.forms]
    width = max(len(example) for example, _ in rows)
    return "\n".join(f"  {example:<{width}}  {what}" for example, what in rows)


def parse_source(text: str | Path) -> AdapterSource:
    """The source a text names; an unknown or wrong one raises :class:`SourceError` that says
    what is wrong and lists the accepted forms."""
    raw = str(text).strip()
    if not raw:
        raise SourceError(f"The adapter source is empty. Accepted forms:\n{accepted_forms()}")
    try:
        for kind in KINDS:
            found = kind.recognise(raw)
            if found is not None:
                return found
    except SourceError as exc:
        raise SourceError(f"{exc.message} Accepted forms:\n{accepted_forms()}") from None
    path = local_path(raw)
    if path is None or not (raw.startswith(("/", ".", "~", "file://")) or path.parent.exists()):
        raise SourceError(
            f"Unrecognised adapter source '{strip_query(raw)}'. Accepted forms:\n{accepted_forms()}"
        )
    raise SourceError(f"Local path '{path}' does not exist. Accepted forms:\n{accepted_forms()}")


def discover_sources(location: str, ctx: SourceContext) -> list[tuple[str, str]]:
    """(source, label) of every adapter at a fleet location, from the kind that can list it."""
    for kind in KINDS:
        found = kind.discover(location, ctx)
        if found is not None:
            return found
    raise SourceError(
        f"A fleet scan needs s3://bucket/prefix/ or hf://<author> (got {location!r})."
    )
