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

from prefect_together_lora.caching import digest
from prefect_together_lora.errors import SourceError
from prefect_together_lora.reporting import slug
from prefect_together_lora.sources import AdapterSource, archive_format
from prefect_together_lora.sources.resolve import (
    ResolvedSource,
    read_adapter_files,
    resolve_source,
)
from prefect_together_lora.sources.s3 import list_objects, make_s3_client
from prefect_together_lora.validation.catalog import default_catalog

CONFIG = "adapter_config.json"


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
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
        objects = list_objects(s3_client or make_s3_client(), bucket, prefix)
        archives = [o.key for o in objects if archive_format(o.key)]
        folders = sorted(
            {
                o.key[: -len(CONFIG)]
                for o in objects
                if o.key.endswith(f"/{CONFIG}") or o.key == prefix + CONFIG
            }
        )
        found = [
            (f"s3://{bucket}/{key}", key[len(prefix) :].rsplit(".", 2)[0])
            for key in sorted(archives)
        ]
        found += [
            (f"s3://{bucket}/{folder}", folder[len(prefix) :].strip("/") or "root")
            for folder in folders
        ]
        return found
    if location.startswith("hf://"):
        from huggingface_hub import HfApi

        from prefect_together_lora.redaction import secret_value
        from prefect_together_lora.sources.hf import default_endpoint

        author = location[5:].strip("/").split("/")[0]
        api = HfApi(
            endpoint=hf_endpoint or default_endpoint(), token=secret_value(hf_token) or False
        )
        return [(f"hf://{m.id}", m.id.split("/", 1)[1]) for m in api.list_models(author=author)]
    raise SourceError(
        f"A fleet scan needs s3://bucket/prefix/ or hf://<author> (got {location!r})."
    )


def discover(
    location: str,
    name_prefix: str,
    *,
    s3_client: Any | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
) -> list[Candidate]:
    client = s3_client or (make_s3_client() if location.startswith("s3://") else None)

    def candidate(found: tuple[str, str]) -> Candidate:
        source, label = found
        resolved = resolve_source(
            AdapterSource.parse(source),
            s3_client=client,
            hf_token=hf_token,
            hf_endpoint=hf_endpoint,
        )
        return Candidate(
            source=source,
            label=label,
            fingerprint=resolved.fingerprint,
            model_name=model_name_for(name_prefix, label, resolved.fingerprint),
            recorded_base=recorded_base(resolved, client, hf_token, hf_endpoint),
        )

    sources = find_sources(location, s3_client=client, hf_token=hf_token, hf_endpoint=hf_endpoint)
    # a few metadata reads per adapter: in parallel, so a large prefix is scanned in seconds
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(candidate, sources))


def recorded_base(
    resolved: ResolvedSource,
    s3_client: Any | None,
    hf_token: str | SecretStr | None,
    hf_endpoint: str | None,
) -> str | None:
    """The base the adapter's own config records, as Together names it when the catalog knows
    it (aliases included); None when the config cannot be read or names none."""
    try:
        files = read_adapter_files(
            resolved, s3_client=s3_client, hf_token=hf_token, hf_endpoint=hf_endpoint
        )
        config = json.loads(files.config or b"{}")
    except (SourceError, OSError, ValueError):
        return None
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.strip():
        return None
    spec = default_catalog().find(name)
    return spec.id if spec is not None else name.strip()
