"""Deployable entrypoints: ``flows/publish_adapter.py:publish_adapter`` and
``flows/publish_adapter.py:publish_new_adapters`` (the fleet scan).

Thin on purpose: the flow lives in the package (``prefect_together_lora.flows``).
``python flows/publish_adapter.py`` serves it locally (needs a Prefect server for runs started
from the UI: ``prefect server start``).
"""

from prefect_together_lora.flows import publish_adapter, publish_new_adapters

__all__ = ["publish_adapter", "publish_new_adapters"]

if __name__ == "__main__":
    publish_adapter.serve(name="publish-adapter")
