"""Artifact keys, artifact creation that never breaks a run, and the markdown report."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any
from uuid import UUID

logger = logging.getLogger("prefect_together_lora.reporting")

KEY_PREFIX = "together-lora"
_KEY_RE = re.compile(r"^[a-z0-9-]*$")


def slug(text: str, max_len: int = 60) -> str:
    """A Prefect artifact-key-safe slug (``^[a-z0-9-]*$``) of any text."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    value = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return value[:max_len].strip("-") or "x"


def artifact_key(kind: str, name: str) -> str:
    """``together-lora-<kind>-<slug(name)>``, always a valid Prefect artifact key."""
    key = f"{KEY_PREFIX}-{slug(kind, 20)}-{slug(name)}"
    assert _KEY_RE.match(key)
    return key


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _safely(kind: str, create: Any, *args: Any, **kwargs: Any) -> UUID | None:
    if not _in_run():
        return None
    try:
        return create(*args, **kwargs)
    except Exception as exc:  # an artifact must never fail the run it reports on
        logger.warning("Could not create %s artifact: %s", kind, exc)
        return None


def table_artifact(key: str, rows: list[dict[str, Any]], description: str) -> UUID | None:
    from prefect.artifacts import create_table_artifact

    return _safely("table", create_table_artifact, rows, key=key, description=description)


def markdown_artifact(key: str, markdown: str, description: str) -> UUID | None:
    from prefect.artifacts import create_markdown_artifact

    return _safely("markdown", create_markdown_artifact, markdown, key=key, description=description)


def link_artifact(key: str, link: str, text: str, description: str) -> UUID | None:
    from prefect.artifacts import create_link_artifact

    return _safely(
        "link", create_link_artifact, link, link_text=text, key=key, description=description
    )


def progress_artifact(key: str, progress: float, description: str) -> UUID | None:
    from prefect.artifacts import create_progress_artifact

    return _safely("progress", create_progress_artifact, progress, key=key, description=description)


def update_progress(artifact_id: UUID | None, progress: float, description: str) -> None:
    if artifact_id is None:
        return
    from prefect.artifacts import update_progress_artifact

    _safely(
        "progress",
        update_progress_artifact,
        artifact_id,
        min(100.0, max(0.0, progress)),
        description=description,
    )


def md_escape(text: str | None, limit: int = 300) -> str:
    value = (text or "").replace("\n", " ").replace("|", "\\|")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_escape(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)
