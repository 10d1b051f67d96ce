"""A local Hugging Face Hub endpoint that serves folders, for ``huggingface_hub`` in tests.

``root/<org>/<name>/`` is the model repo ``org/name`` (``root/datasets/<org>/<name>/`` a dataset
repo). Its ``main`` revision is the folder as it is now; the commit sha is derived from the
content, so changing a file moves ``main`` like a push would. Private and gated repos answer
401/403 with the ``X-Error-Code`` headers the real Hub sends unless the right token is given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from prefect_together_lora.testing.hub.repos import HubStats, LocalHub
from prefect_together_lora.testing.hub.routes import create_hub_app


@contextlib.contextmanager
def run_local_hub(
    root: str | os.PathLike[str],
    *,
    private: dict[str, str] | None = None,
    gated: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[tuple[str, LocalHub]]:
    """Serve ``root`` as a Hub; yields ``(endpoint, hub)``. Pass the endpoint as ``HF_ENDPOINT``
    or as ``endpoint=`` to ``huggingface_hub`` calls. ``private``/``gated`` map repo ids to the
    token that may read them."""
    from prefect_together_lora.testing.emulator.server import serve_app_in_thread

    hub = LocalHub(Path(root), private=private, gated=gated)
    with serve_app_in_thread(create_hub_app(hub), host, port) as url:
        yield url, hub


__all__ = ["HubStats", "LocalHub", "create_hub_app", "run_local_hub"]
