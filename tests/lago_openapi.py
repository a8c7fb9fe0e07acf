"""Validate payloads against Lago's OpenAPI 3.1 spec (../shared/lago/openapi.yaml, v1.51.0).

The spec has two known mismatches with the server (FACTS.md), patched here, in the test only:
- `properties` values are `oneOf [string, integer, number]`: an integer is also a number, so
  oneOf rejects every integer. The server takes any of them: read it as anyOf.
- `timestamp` is `oneOf [integer, string]`; the server also takes floats.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


@functools.cache
def raw_spec(path: Path) -> dict[str, Any]:
    """The spec as published."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


@functools.cache
def spec(path: Path) -> dict[str, Any]:
    """The spec with the known mismatches patched."""
    patched = copy.deepcopy(raw_spec(path))
    schemas = patched["components"]["schemas"]
    for name in ("EventInputObject", "EventObject"):
        event = schemas[name]["properties"]
        if "additionalProperties" in event.get("properties", {}):
            values = event["properties"]["additionalProperties"]
            if "oneOf" in values:
                values["anyOf"] = values.pop("oneOf")
        timestamp = event.get("timestamp", {})
        if "oneOf" in timestamp:
            timestamp["oneOf"] = [{"type": "integer"}, {"type": "number"}, {"type": "string"}]
            timestamp["anyOf"] = timestamp.pop("oneOf")
    return patched


def validator(
    path: Path, schema_name: str, *, patched: bool = True
) -> jsonschema.protocols.Validator:
    document = spec(path) if patched else raw_spec(path)
    registry: Registry[Any] = Registry().with_resource(
        "urn:lago-openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:lago-openapi#/components/schemas/{schema_name}"}
    cls = jsonschema.validators.validator_for(
        {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    return cls(schema, registry=registry)  # type: ignore[no-any-return]


def errors(path: Path, schema_name: str, payload: Any, *, patched: bool = True) -> list[str]:
    """Every way `payload` breaks the schema, as readable lines (empty: it conforms)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator(path, schema_name, patched=patched).iter_errors(payload)
    ]
