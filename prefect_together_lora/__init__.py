"""prefect-together-lora: take a LoRA adapter from a training run to a live Together AI model.

Heavy modules load lazily, so ``import prefect_together_lora`` (done by Prefect for every
registered collection) stays cheap, and the plain clients (``client``, ``together``) can be used
without Prefect installed or imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from prefect_together_lora._version import __version__

if "prefect" in sys.modules:
    # Prefect is loading its collections (or the caller uses Prefect): register the block type
    # now, so `Block.get_block_class_from_key("together-credentials")` finds it.
    from prefect_together_lora.credentials import TogetherCredentials

if TYPE_CHECKING:
    from prefect_together_lora.client import AsyncTogetherClient, TogetherClient
    from prefect_together_lora.credentials import TogetherCredentials
    from prefect_together_lora.flows import publish_adapter
    from prefect_together_lora.publish_result import PublishResult

_LAZY = {
    "publish_adapter": "prefect_together_lora.flows",
    "PublishResult": "prefect_together_lora.publish_result",
    "TogetherClient": "prefect_together_lora.client",
    "AsyncTogetherClient": "prefect_together_lora.client",
    "TogetherCredentials": "prefect_together_lora.credentials",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prefect_together_lora' has no attribute {name!r}")


__all__ = [
    "AsyncTogetherClient",
    "PublishResult",
    "TogetherClient",
    "TogetherCredentials",
    "__version__",
    "publish_adapter",
]
