"""Deployments of the publish and fleet flows: event triggers after training, a schedule for
the fleet scan, concurrency limits. Built in Python (testable offline) and used by
``flows/serve.py``; ``deployments/prefect.yaml`` declares the same for work-pool setups."""

from __future__ import annotations

import os
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger

from prefect_together_lora.events import TRAINING_COMPLETED

PUBLISH_DEPLOYMENT = "publish-adapter"
FLEET_DEPLOYMENT = "fleet-scan"
# deployments/prefect.yaml (work pools) uses its own names, so serving flows/serve.py and
# deploying to a pool never take over each other's deployments
WORKER_PUBLISH_DEPLOYMENT = "publish-adapter-worker"
WORKER_FLEET_DEPLOYMENT = "fleet-scan-worker"
TRAINING_FLOW = "train-lora"
DEFAULT_FLEET_CRON = "0 * * * *"


def training_event_trigger() -> DeploymentEventTrigger:
    """Run publish_adapter when training announces itself with ``emit_training_completed``
    (or ``prefect event emit together.lora.training.completed``). Single-expression templates
    keep their JSON type (Prefect >= 3.6.24), so a null eval_set stays null; optional keys are
    read with ``.get`` so a payload may omit them (a missing key would make the template fail
    and the event create no run). The flow merges ``evaluation`` field by field over the
    deployment's own, so a gate set on the deployment survives."""
    return DeploymentEventTrigger(
        name="publish-on-training-completed",
        description="A training job finished and announced its adapter.",
        expect={TRAINING_COMPLETED},
        match={"prefect.resource.id": "together.lora.training.*"},
        parameters={
            "source": "{{ event.payload.source }}",
            "base_model": "{{ event.payload.base_model }}",
            "model_name": "{{ event.payload.model_name }}",
            "description": "{{ event.payload.get('description') }}",
            "evaluation": {"eval_set": "{{ event.payload.get('eval_set') }}"},
        },
    )


def training_flow_trigger(training_flow: str = TRAINING_FLOW) -> DeploymentEventTrigger:
    """The second pattern: chain on ``prefect.flow-run.Completed`` of a named training flow,
    reading its parameters (``output_dir``, ``base_model``, ``model_name``)."""
    return DeploymentEventTrigger(
        name=f"publish-after-{training_flow}",
        description=f"The Prefect flow '{training_flow}' completed.",
        expect={"prefect.flow-run.Completed"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": training_flow},
        parameters={
            "source": "{{ flow_run.parameters.output_dir }}",
            "base_model": "{{ flow_run.parameters.base_model }}",
            "model_name": "{{ flow_run.parameters.model_name }}",
        },
    )


def publish_deployment(**overrides: Any) -> Any:
    from prefect_together_lora.flows import publish_adapter

    options: dict[str, Any] = {
        "name": PUBLISH_DEPLOYMENT,
        "description": "Publish a LoRA adapter to Together after training.",
        "triggers": [training_event_trigger(), training_flow_trigger()],
        "concurrency_limit": ConcurrencyLimitConfig(
            limit=4, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        "tags": ["together", "lora"],
    }
    options.update(overrides)
    return publish_adapter.to_deployment(**options)


def fleet_deployment(**overrides: Any) -> Any:
    """The scheduled fleet scan. Location, base model and schedule come from the environment
    (``TOGETHER_LORA_FLEET_LOCATION``, ``TOGETHER_LORA_FLEET_BASE_MODEL``,
    ``TOGETHER_LORA_FLEET_CRON`` or ``TOGETHER_LORA_FLEET_INTERVAL_S``) or ``overrides``.
    Without a location the schedule is created inactive (a placeholder bucket would fail every
    hour): set the location, then resume the schedule in the UI or redeploy."""
    from prefect.schedules import Cron, Interval

    from prefect_together_lora.flows import publish_new_adapters

    location = os.environ.get("TOGETHER_LORA_FLEET_LOCATION")
    parameters: dict[str, Any] = {
        "base_model": os.environ.get(
            "TOGETHER_LORA_FLEET_BASE_MODEL", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
        ),
        "name_prefix": os.environ.get("TOGETHER_LORA_FLEET_PREFIX", "lora"),
    }
    if location:
        parameters["location"] = location
    active = bool(location) or "location" in overrides.get("parameters", {})
    interval = os.environ.get("TOGETHER_LORA_FLEET_INTERVAL_S")
    schedule = (
        Interval(float(interval), active=active)
        if interval
        else Cron(os.environ.get("TOGETHER_LORA_FLEET_CRON", DEFAULT_FLEET_CRON), active=active)
    )
    options: dict[str, Any] = {
        "name": FLEET_DEPLOYMENT,
        "description": "Publish every new adapter found under a prefix.",
        "parameters": parameters,
        "concurrency_limit": ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        "tags": ["together", "lora", "fleet"],
        "schedules": [schedule],
    }
    options.update(overrides)
    return publish_new_adapters.to_deployment(**options)
