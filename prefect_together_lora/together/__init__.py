"""Together itself, with no Prefect in it: hosts, the backend interface and its v1/v2
implementations. ``make_backend`` is the one place a backend is chosen."""

from __future__ import annotations

from typing import Any

from prefect_together_lora.together.backend import ApiVersion, Backend
from prefect_together_lora.together.settings import inference_url_for


def make_backend(
    api: ApiVersion,
    api_key: Any,
    base_url: str,
    *,
    project_id: str | None = None,
    inference_url: str | None = None,
    **client_options: Any,
) -> Backend:
    """A ready backend for ``api`` ("v2" default, "v1" legacy). ``client_options`` go to the
    HTTP client (timeouts, retry policy)."""
    if api == "v2":
        from prefect_together_lora.together.v2 import V2Backend
        from prefect_together_lora.together.v2_client import TogetherV2Client

        client = TogetherV2Client(api_key, base_url, project_id=project_id, **client_options)
        return V2Backend(client, inference_url_for(base_url, inference_url))
    if api == "v1":
        from prefect_together_lora.client import TogetherClient
        from prefect_together_lora.together.v1 import V1Backend

        return V1Backend(TogetherClient(api_key, base_url, **client_options))
    raise ValueError(f"api must be 'v2' or 'v1', not {api!r}")


__all__ = ["ApiVersion", "Backend", "make_backend"]
