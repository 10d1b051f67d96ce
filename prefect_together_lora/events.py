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
REJECTED = "together.lora.fleet.rejected"
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


class NoPrefectServer(RuntimeError):
    """The event would go to a throwaway server that dies with this process: nobody sees it."""


def require_persistent_server() -> None:
    """Refuse, at once and clearly, to emit where no trigger can ever see the event: without
    ``PREFECT_API_URL`` Prefect would start an embedded server for this process alone (~20 s),
    deliver the event to it, and stop it — no publish run would ever start."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise NoPrefectServer(
            "PREFECT_API_URL is not set, so this event would go to a temporary server that "
            "exits with this process and no publish would run. Point the training job at the "
            "Prefect server the publish-adapter deployment runs on: "
            "export PREFECT_API_URL=http://<host>:4200/api (or a Prefect Cloud workspace URL "
            "with PREFECT_API_KEY)."
        )


def emit_training_completed(
    source: str,
    base_model: str,
    model_name: str,
    eval_set: str | None = None,
    description: str | None = None,
    **labels: str,
) -> Any:
    """Announce a finished training run; the ``publish-adapter`` deployment's trigger runs the
    publish flow with these values. Raises :class:`NoPrefectServer` when ``PREFECT_API_URL``
    is not set (the event would reach no trigger). The same from a shell (non-Python jobs)::

        prefect event emit together.lora.training.completed \\
            --resource-id together.lora.training.<model-name> \\
            --payload '{"source": "s3://bucket/run-7/adapter.zip", "base_model": "...",
                        "model_name": "...", "eval_set": null, "description": null}'
    """
    from prefect.events import emit_event

    require_persistent_server()
    return emit_event(
        TRAINING_COMPLETED,
        resource={
            "prefect.resource.id": f"together.lora.training.{slug(model_name, 120)}",
            "prefect.resource.name": model_name,
            **labels,
        },
        payload=training_completed_payload(source, base_model, model_name, eval_set, description),
    )
