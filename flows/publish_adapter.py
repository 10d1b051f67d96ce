"""Deployable entrypoint: ``flows/publish_adapter.py:publish_adapter``.

Thin on purpose: the flow lives in the package (``prefect_together_lora.flows``).
``python flows/publish_adapter.py`` serves it locally (needs a Prefect server for runs started
from the UI: ``prefect server start``).
"""

from prefect_together_lora.flows import publish_adapter

__all__ = ["publish_adapter"]

if __name__ == "__main__":
    publish_adapter.serve(name="publish-adapter")
