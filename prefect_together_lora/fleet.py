"""Fleet scan: find the adapters under an S3 prefix or a Hub author, and tell which are new.

"Already published" is decided from state that outlives any process: each adapter's model name
is derived from its content fingerprint, and the backend says whether Together has that name
(v2: a record with a validated revision or an upload in progress; v1: a job), with the upload
task's content-keyed cache behind it inside publish_adapter.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.hashing import digest
from prefect_together_lora.reporting import slug
from prefect_together_lora.sources import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.registry import discover_sources
from prefect_together_lora.validation.catalog import default_catalog


class Candidate(BaseModel):
    """One adapter found by a scan, with the model name its content maps to and the base its
    own config records (a mixed location needs no single base)."""

    source: str
    label: str
    fingerprint: str
    model_name: str
    recorded_base: str | None = None


class FleetEntry(BaseModel):
    source: str
    model_name: str
    fingerprint: str
    action: Literal["published", "skipped", "rejected", "failed"]
    reason: str = ""
    base_model: str | None = None
    job_id: str | None = None
    flow_run_id: str | None = None


def model_name_for(prefix: str, label: str, fingerprint: str) -> str:
    """``<prefix>-<label>-<8 hex of the fingerprint>``: one name per adapter content."""
    return f"{slug(prefix, 30)}-{slug(label, 40)}-{digest(fingerprint)[:8]}"


def find_sources(
    location: str,
    *,
    s3_client: Any | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
) -> list[tuple[str, str]]:
    """(source, label) of every adapter under ``s3://bucket/prefix/`` (archives, and folders
    holding an adapter_config.json) or ``hf://<author>`` (the author's model repos)."""
    with SourceContext(s3_client=s3_client, hf_token=hf_token, hf_endpoint=hf_endpoint) as ctx:
        return discover_sources(location, ctx)


def discover(
    location: str,
    name_prefix: str,
    *,
    s3_client: Any | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
) -> list[Candidate]:
    ctx = SourceContext(s3_client=s3_client, hf_token=hf_token, hf_endpoint=hf_endpoint)

    def candidate(found: tuple[str, str]) -> Candidate:
        source, label = found
        resolved = AdapterSource.parse(source).resolve(ctx)
        return Candidate(
            source=source,
            label=label,
            fingerprint=resolved.fingerprint,
            model_name=model_name_for(name_prefix, label, resolved.fingerprint),
            recorded_base=recorded_base(resolved, ctx),
        )

    # a few metadata reads per adapter: in parallel, so a large prefix is scanned in seconds
    with ctx, ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(candidate, discover_sources(location, ctx)))


def recorded_base(resolved: ResolvedSource, ctx: SourceContext) -> str | None:
    """The base the adapter's own config records, as Together names it when the catalog knows
    it (aliases included); None when the config cannot be read or names none."""
    try:
        files = resolved.source.read_files(resolved, ctx)
        config = json.loads(files.config or b"{}")
    except (SourceError, OSError, ValueError):
        return None
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.strip():
        return None
    spec = default_catalog().find(name)
    return spec.id if spec is not None else name.strip()
