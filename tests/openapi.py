"""Validate JSON against component schemas of Together's OpenAPI spec (tests/data, MIT).

The spec says OpenAPI 3.1 but uses 3.0's ``nullable``; JSON Schema ignores that keyword, so it
is translated here (``nullable: true`` → also accept null) before validating.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC = Path(__file__).parent / "data" / "together-openapi.yaml"


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if "allOf" in node and any(p == {"nullable": True} for p in node["allOf"]):
        rest = [p for p in node["allOf"] if p != {"nullable": True}]
        others = {k: v for k, v in node.items() if k != "allOf"}
        return {**others, "anyOf": [{"allOf": rest}, {"type": "null"}]}
    if node.pop("nullable", False) is True:
        return {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _spec() -> dict[str, Any]:
    return _nullable(yaml.safe_load(SPEC.read_text()))


def validator(component: str) -> Draft202012Validator:
    spec = _spec()
    registry = Registry().with_resource(
        "spec",
        Resource.from_contents(
            spec, default_specification=__import__("referencing.jsonschema").jsonschema.DRAFT202012
        ),
    )
    schema = {"$ref": f"spec#/components/schemas/{component}"}
    return Draft202012Validator(schema, registry=registry)


def assert_conforms(instance: Any, component: str) -> None:
    errors = sorted(validator(component).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
