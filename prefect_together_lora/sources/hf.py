"""Hugging Face Hub sources: pin a revision to its commit sha and read the adapter's metadata.

``endpoint`` is passed explicitly to every call (``HF_ENDPOINT`` is read by huggingface_hub at
import time, so tests and users can point each call at a local or private Hub).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import secret_value
from prefect_together_lora.sources.archive import (
    CONFIG,
    MAX_CONFIG_BYTES,
    WEIGHTS,
    AdapterFiles,
    Member,
    _header_from,
)
from prefect_together_lora.sources.ranged import HttpRangeReader

# Paths whose presence (or absence) the layout rules need, asked in one paths-info call.
PROBED_PATHS = (
    CONFIG,
    WEIGHTS,
    "adapter_model.bin",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)


class HubAccessError(SourceError):
    """The repo or revision cannot be read; ``kind`` is gated, missing, revision or error."""

    def __init__(self, message: str, kind: str) -> None:
        self.kind = kind
        super().__init__(message)


def default_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _api(endpoint: str | None, token: str | SecretStr | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint or default_endpoint(), token=secret_value(token) or False)


def resolve_revision(
    repo_id: str,
    revision: str | None,
    *,
    token: str | SecretStr | None = None,
    endpoint: str | None = None,
) -> str:
    """The commit sha ``revision`` (default ``main``) points at now."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    try:
        info = _api(endpoint, token).model_info(repo_id, revision=rev)
    except GatedRepoError:
        raise HubAccessError(
            f"Cannot access '{repo_id}' at revision '{rev}' (GatedRepoError). "
            "Pass an hf_token with read access, or accept the gate.",
            "gated",
        ) from None
    except RevisionNotFoundError:
        raise HubAccessError(
            f"Revision '{rev}' does not exist in '{repo_id}'.", "revision"
        ) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"Cannot access '{repo_id}' at revision '{rev}' "
            "(RepositoryNotFoundError): it does not exist, or it is private "
            "and needs an hf_token with read access.",
            "missing",
        ) from None
    except HfHubHTTPError as exc:
        raise HubAccessError(f"The Hub refused '{repo_id}': {exc}", "error") from None
    except OSError as exc:
        raise HubAccessError(f"Cannot reach the Hub for '{repo_id}': {exc}", "error") from None
    if not info.sha:
        raise HubAccessError(f"The Hub returned no commit sha for '{repo_id}'.", "error")
    return str(info.sha)


def read_hub(
    repo_id: str,
    sha: str,
    *,
    token: str | SecretStr | None = None,
    endpoint: str | None = None,
    sample_bytes: int = 0,
) -> AdapterFiles:
    """Members (probed paths, or the whole tree when the adapter is not at the root), the config
    and the safetensors header, all at commit ``sha``."""
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    endpoint = endpoint or default_endpoint()
    api = _api(endpoint, token)
    entries = api.get_paths_info(repo_id, list(PROBED_PATHS), revision=sha)
    members = [Member(e.path, int(getattr(e, "size", 0) or 0)) for e in entries]
    files = AdapterFiles("hub", members, requests=1, fingerprint=f"hf:{repo_id}@{sha}")
    present = {m.name: m for m in members}
    if CONFIG not in present or WEIGHTS not in present:
        tree = api.list_repo_tree(repo_id, revision=sha, recursive=True)
        files.members = [
            Member(t.path, int(getattr(t, "size", 0) or 0), not hasattr(t, "size")) for t in tree
        ]
        files.requests += 1
    if CONFIG in present:
        if present[CONFIG].size > MAX_CONFIG_BYTES:
            files.config_error = f"{CONFIG} is larger than {MAX_CONFIG_BYTES:,} bytes"
        else:
            # one GET through huggingface_hub's own session, auth and error mapping
            # (hf_hub_download would add a metadata HEAD: 5 requests instead of 4)
            response = get_session().get(
                hf_hub_url(repo_id, CONFIG, revision=sha, endpoint=endpoint),
                headers=build_hf_headers(token=secret_value(token) or False),
                follow_redirects=True,
            )
            hf_raise_for_status(response)
            files.config = response.content[: MAX_CONFIG_BYTES + 1]
            files.requests += 1
            files.bytes_read += len(files.config)
    if WEIGHTS in present:
        files.weights_size = present[WEIGHTS].size
        url = hf_hub_url(repo_id, WEIGHTS, revision=sha, endpoint=endpoint)
        headers = build_hf_headers(token=secret_value(token) or False)
        with HttpRangeReader(url, headers=headers, start_at_head=True) as reader:
            _header_from(reader.read, files.weights_size, files, sample_bytes)
            files.requests += reader.requests
            files.bytes_read += reader.bytes_read
    return files
