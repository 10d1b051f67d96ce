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
    """Emit an event on the adapter's resource (``together.lora.<requested name>``; the
    namespaced name to call is the ``together.model`` label). Never fails the caller."""
    from prefect.events import emit_event

    try:
        emit_event(event, resource=resource_for(model_name, **labels), payload=payload)
    except Exception as exc:
        logger.warning("Could not emit %s: %s", event, exc)


def training_completed_payload(
    source: str,
    base_model: str,
    model_name: str,
    eval_set: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The payload the post-training trigger maps to publish_adapter's parameters (every key
    always present, so the trigger's templates never meet a missing key)."""
    return {
        "source": source,
        "base_model": base_model,
        "model_name": model_name,
        "eval_set": eval_set,
        "description": description,
    }


def emit_training_completed(
    source: str,
    base_model: str,
    model_name: str,
    eval_set: str | None = None,
    description: str | None = None,
    **labels: str,
) -> Any:
    """Announce a finished training run; the ``publish-adapter`` deployment's trigger runs the
    publish flow with these values. The same from a shell (non-Python training jobs)::

        prefect event emit together.lora.training.completed \\
            --resource-id together.lora.training.<model-name> \\
            --payload '{"source": "s3://bucket/run-7/adapter.zip", "base_model": "...",
                        "model_name": "...", "eval_set": null, "description": null}'
    """
    from prefect.events import emit_event

    return emit_event(
        TRAINING_COMPLETED,
        resource={
            "prefect.resource.id": f"together.lora.training.{slug(model_name, 120)}",
            "prefect.resource.name": model_name,
            **labels,
        },
        payload=training_completed_payload(source, base_model, model_name, eval_set, description),
    )
