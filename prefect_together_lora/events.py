"""Events this plugin emits, so deployments and automations can react to a publish."""

from __future__ import annotations

import logging
from typing import Any

from prefect_together_lora.reporting import slug

logger = logging.getLogger("prefect_together_lora.events")

VALIDATED = "together.lora.validated"
UPLOADED = "together.lora.uploaded"
READY = "together.lora.ready"
EVALUATED = "together.lora.evaluated"
TRAINING_COMPLETED = "together.lora.training.completed"


def resource_for(model_name: str, **labels: str) -> dict[str, str]:
    """The event resource of an adapter: ``together.lora.<slug>`` plus readable labels."""
    return {
        "prefect.resource.id": f"together.lora.{slug(model_name, 120)}",
        "prefect.resource.name": model_name,
        **labels,
    }


def emit(event: str, model_name: str, payload: dict[str, Any], **labels: str) -> None:
    """Emit an event; never fails the caller (events are best-effort by nature)."""
    from prefect.events import emit_event

    try:
        emit_event(event, resource=resource_for(model_name, **labels), payload=payload)
    except Exception as exc:
        logger.warning("Could not emit %s: %s", event, exc)
