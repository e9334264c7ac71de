"""Validate a payload against a named schema of the vendors' specs kept in tests/specs/.

A name is ``<file>#<schema>``: a component schema of an OpenAPI document
(``twilio-api-v2010-calls.json#api.v2010.account.call``) or a ``$defs`` entry of a JSON Schema
(``twilio-voice-webhooks.json#StatusCallback``). References between the files resolve, so one
spec can build on another. OpenAPI 3.0's ``nullable`` is read as JSON Schema's ``null`` type.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPECS = Path(__file__).parent
BASE_URI = "https://callbridge.invalid/specs/"


def _nullable_as_null(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` in JSON Schema terms: ``null`` added to type and enum."""
    if isinstance(node, list):
        return [_nullable_as_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable_as_null(value) for key, value in node.items()}
    if out.pop("nullable", False) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    if str(document.get("openapi", "")).startswith("3.0"):
        document = _nullable_as_null(document)
    return dict(document)


@functools.cache
def _registry() -> Registry:
    resources = [
        (BASE_URI + path.name, Resource.from_contents(_load(path), DRAFT202012))
        for path in sorted(SPECS.glob("*.json"))
    ]
    return Registry().with_resources(resources)


def _pointer(name: str) -> str:
    file, separator, schema = name.partition("#")
    if not separator or not (SPECS / file).is_file():
        raise KeyError(f"no spec named {name!r} (expected <file in tests/specs>#<schema>)")
    document = _registry().contents(BASE_URI + file)
    if "openapi" in document:
        container, pointer = document.get("components", {}).get("schemas", {}), "components/schemas"
    else:
        container, pointer = document.get("$defs", {}), "$defs"
    if schema not in container:
        raise KeyError(f"{file} has no schema {schema!r}")
    return f"{BASE_URI}{file}#/{pointer}/{schema}"


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": _pointer(name)}, registry=_registry())


def errors(name: str, payload: Any) -> list[str]:
    """Every way ``payload`` breaks the schema ``name``, one line each; empty when it is valid."""
    found = sorted(
        validator(name).iter_errors(copy.deepcopy(payload)), key=lambda e: list(e.absolute_path)
    )
    return [f"{name} at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
