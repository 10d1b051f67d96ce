"""Deployments built offline: triggers, schedule, limits; the YAML says the same; every
parameter renders as a described form field with valid defaults and no secret as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from prefect_together_lora.deployments import (
    FLEET_DEPLOYMENT,
    PUBLISH_DEPLOYMENT,
    WORKER_FLEET_DEPLOYMENT,
    WORKER_PUBLISH_DEPLOYMENT,
    fleet_deployment,
    publish_deployment,
    training_event_trigger,
    training_flow_trigger,
)
from prefect_together_lora.events import TRAINING_COMPLETED, training_completed_payload
from prefect_together_lora.flows import publish_adapter, publish_new_adapters

YAML = Path(__file__).parents[1] / "deployments" / "prefect.yaml"


def test_publish_deployment_triggers() -> None:
    deployment = publish_deployment()
    assert deployment.name == PUBLISH_DEPLOYMENT
    event, chained = deployment.triggers
    assert event.expect == {TRAINING_COMPLETED}
    assert event.parameters["evaluation"] == {"eval_set": "{{ event.payload.get('eval_set') }}"}
    assert chained.expect == {"prefect.flow-run.Completed"}
    assert dict(chained.match_related.root) == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": "train-lora",
    }
    assert deployment.concurrency_limit == 4


def test_fleet_deployment_schedule_from_env(monkeypatch) -> None:
    monkeypatch.setenv("TOGETHER_LORA_FLEET_LOCATION", "s3://b/adapters/")
    monkeypatch.setenv("TOGETHER_LORA_FLEET_CRON", "15 * * * *")
    deployment = fleet_deployment()
    assert deployment.name == FLEET_DEPLOYMENT
    assert deployment.parameters["location"] == "s3://b/adapters/"
    assert deployment.schedules[0].schedule.cron == "15 * * * *"
    assert deployment.schedules[0].active
    monkeypatch.setenv("TOGETHER_LORA_FLEET_INTERVAL_S", "30")
    assert fleet_deployment().schedules[0].schedule.interval.total_seconds() == 30


def test_fleet_schedule_is_inactive_until_a_location_is_set(monkeypatch) -> None:
    monkeypatch.delenv("TOGETHER_LORA_FLEET_LOCATION", raising=False)
    deployment = fleet_deployment()
    assert not deployment.schedules[0].active and "location" not in deployment.parameters


def test_yaml_declares_the_same_deployments() -> None:
    spec = yaml.safe_load(YAML.read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    publish, fleet = by_name[WORKER_PUBLISH_DEPLOYMENT], by_name[WORKER_FLEET_DEPLOYMENT]
    # served (flows/serve.py) and work-pool deployments never share a name
    assert not set(by_name) & {PUBLISH_DEPLOYMENT, FLEET_DEPLOYMENT}
    assert fleet["schedules"][0]["active"] is False and "location" not in fleet["parameters"]
    assert "pull" not in spec  # prefect deploy records the clone's directory itself
    for declared, built in zip(
        publish["triggers"], [training_event_trigger(), training_flow_trigger()], strict=True
    ):
        assert declared["parameters"] == built.parameters
        assert set(declared["expect"]) == built.expect
    assert publish["concurrency_limit"]["limit"] == 4
    assert fleet["schedules"][0]["cron"] == "0 * * * *"
    assert fleet["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
    import importlib

    for d in spec["deployments"]:
        module, _, name = d["entrypoint"].partition(":")
        assert Path(Path(__file__).parents[1] / module).is_file()
        assert name in {"publish_adapter", "publish_new_adapters"}
    importlib.import_module("prefect_together_lora.flows")
    # the YAML's parameter defaults are valid parameters of the flows
    schema = _schema(publish_adapter)
    Draft202012Validator(schema).validate(
        {"source": "s", "base_model": "b", "model_name": "m", **publish["parameters"]}
    )
    Draft202012Validator(_schema(publish_new_adapters)).validate(
        {"location": "s3://b/p/", **fleet["parameters"]}
    )


def _schema(flow: Any) -> dict[str, Any]:
    schema = flow.parameters.model_dump()
    schema["$defs"] = schema.pop("definitions", {})
    text = yaml.safe_dump(schema).replace("#/definitions/", "#/$defs/")
    return yaml.safe_load(text)


def _walk(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    fields = [(name, prop) for name, prop in schema["properties"].items()]
    for model, definition in schema.get("definitions", {}).items():
        fields += [
            (f"{model}.{name}", prop) for name, prop in definition.get("properties", {}).items()
        ]
    return fields


@pytest.mark.parametrize("flow", [publish_adapter, publish_new_adapters], ids=lambda f: f.name)
def test_ui_forms_are_described_typed_and_valid(flow) -> None:
    schema = flow.parameters.model_dump()
    for name, prop in _walk(schema):
        if name.startswith("TogetherCredentials."):
            continue  # the block's own fields (rendered by the block picker)
        assert prop.get("description"), f"{flow.name}: {name} has no description"
        assert not (
            prop.get("type") == "object" and "properties" not in prop and "$ref" not in prop
        ), f"{name} is a free-form dict"
        assert prop.get("additionalProperties") not in (True, {}), name
        if not name.startswith("TogetherCredentials."):  # readable titles ("Max wait (s)")
            title = prop.get("title", "")
            assert title and "_" not in title and not title.endswith((" S", " Min")), title
    # secrets only as block references
    credentials = schema["properties"]["credentials"]
    ref = (credentials.get("anyOf") or [credentials])[0]["$ref"].rsplit("/", 1)[-1]
    assert schema["definitions"][ref]["block_type_slug"] == "together-credentials"
    names = {
        n.rsplit(".", 1)[-1] for n, _ in _walk(schema) if not n.startswith("TogetherCredentials.")
    }
    assert not names & {"api_key", "hf_token", "token", "password", "aws_secret_access_key"}
    # defaults validate against the schema (an invalid default silently falls back in the UI)
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    required = {k: "x" for k in schema.get("required", [])}
    Draft202012Validator(_schema(flow)).validate({**defaults, **required})


def test_training_payload_always_has_every_key() -> None:
    payload = training_completed_payload("s3://b/a.zip", "base", "name")
    assert payload == {
        "source": "s3://b/a.zip",
        "base_model": "base",
        "model_name": "name",
        "eval_set": None,
        "description": None,
    }


def test_emit_refuses_without_a_persistent_server(tmp_path) -> None:
    """Without PREFECT_API_URL the event would go to a throwaway server and start no run:
    the helper refuses with the fix instead of 'succeeding'."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path)
    code = (
        "from prefect_together_lora.events import emit_training_completed; "
        "emit_training_completed('s3://b/a.zip', 'base', 'name')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "NoPrefectServer" in result.stderr and "PREFECT_API_URL is not set" in result.stderr
    assert "Starting temporary server" not in result.stderr


def test_deployment_options_are_merged_field_by_field() -> None:
    from prefect_together_lora.flows import with_deployment_option
    from prefect_together_lora.options import EvalOptions

    stored = {"evaluation": {"min_score": 0.99, "on_fail": "fail", "eval_set": "old.jsonl"}}
    # what a trigger passes: only eval_set (and a null for a missing optional key)
    run_value = EvalOptions.model_validate({"eval_set": "new.jsonl", "judge_model": None})
    merged = with_deployment_option(stored, "evaluation", run_value)
    assert merged.min_score == 0.99 and merged.eval_set == "new.jsonl"
    # a field the run sets explicitly wins; outside a deployment nothing changes
    explicit = EvalOptions.model_validate({"min_score": 0.5})
    assert with_deployment_option(stored, "evaluation", explicit).min_score == 0.5
    assert with_deployment_option({}, "evaluation", run_value) is run_value
