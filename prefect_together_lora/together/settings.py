"""Where Together lives: hosts and their normal form. No Prefect here (the plain clients use it)."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.together.ai"
"""The control plane (v1 ``/v1/...`` and v2 ``/v2/projects/...`` paths both live here)."""

DEFAULT_INFERENCE_URL = "https://api-inference.together.ai"
"""Where dedicated (v2) deployments answer ``/v1/chat/completions``."""


def normalize_base_url(url: str) -> str:
    """The API host: request paths carry their version, so a trailing ``/v1`` (the 2.x SDK's
    convention) or ``/`` is dropped."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https:// (got {url!r})")
    for suffix in ("/v1", "/v0", "/v2"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def inference_url_for(base_url: str, inference_url: str | None) -> str:
    """The inference host: the one given, else Together's inference host when the control plane
    is Together's own, else the control plane itself (an emulator or a proxy serves both, the
    way the 3.x SDK sends chat to ``base_url`` once it is overridden)."""
    if inference_url:
        return normalize_base_url(inference_url)
    base = normalize_base_url(base_url)
    if base in (DEFAULT_BASE_URL, "https://api.together.xyz"):
        return DEFAULT_INFERENCE_URL
    return base
