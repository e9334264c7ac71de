"""Validate ElevenLabs conversation WebSocket messages against the agent AsyncAPI kept here.

`server_errors(message)` checks a message the agent sends (chosen by its `type`),
`client_errors(message)` one a client sends (audio chunks carry no `type`: they are known by
their `user_audio_chunk` key). Both return a list of error texts, empty when the message is
valid; a type the spec does not list is an error too.

The document is OpenAPI-flavoured JSON Schema, so it is adapted once, on load, to plain
JSON Schema 2020-12 without changing what it accepts:
- `nullable: true` becomes `anyOf: [the schema, null]`;
- an `allOf` whose parts each say `additionalProperties: false` (the MCP tool call states)
  would accept nothing, as each part forbids the other's fields: the parts lose that keyword
  and the `allOf` gets `unevaluatedProperties: false`, which is what the spec means.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC = Path(__file__).with_name("elevenlabs-agent-asyncapi.yaml")


def _adapt(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_adapt(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    parts = node.get("allOf")
    if isinstance(parts, list) and parts:
        resolved = [_resolve(part, root) for part in parts]
        if all(_closed(part) for part in resolved):
            node = {**node, "allOf": [_opened(p) for p in resolved]}
            node["unevaluatedProperties"] = False
    node = {key: _adapt(value, root) for key, value in node.items()}
    if node.pop("nullable", False):
        described = {k: node.pop(k) for k in ("description", "default") if k in node}
        return {"anyOf": [node, {"type": "null"}], **described}
    return node


def _resolve(part: Any, root: dict[str, Any]) -> Any:
    """A local reference's target (the only kind the document uses), else the part itself."""
    if isinstance(part, dict) and str(part.get("$ref", "")).startswith("#/"):
        target: Any = root
        for step in part["$ref"][2:].split("/"):
            target = target[step]
        return target
    return part


def _closed(part: Any) -> bool:
    return isinstance(part, dict) and part.get("additionalProperties") is False


def _opened(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "additionalProperties"}


class AsyncApi:
    def __init__(self, path: Path = SPEC) -> None:
        raw = yaml.safe_load(path.read_text())
        self.version = str(raw["info"]["version"])
        self._document = _adapt(copy.deepcopy(raw), raw)
        channel = raw["channels"]["AgentMessages"]
        self.server_types = self._payloads(raw, channel["publish"]["message"]["oneOf"])
        self.client_types = self._payloads(raw, channel["subscribe"]["message"]["oneOf"])
        self._validators: dict[str, Draft202012Validator] = {}

    @staticmethod
    def _payloads(raw: dict[str, Any], refs: Iterable[dict[str, str]]) -> dict[str, str]:
        """message type -> JSON pointer of its payload schema."""
        found: dict[str, str] = {}
        schemas = raw["components"]["schemas"]
        for ref in refs:
            name = ref["$ref"].rsplit("/", 1)[-1]
            payload_ref = raw["components"]["messages"][name]["payload"]["$ref"]
            payload = schemas[payload_ref.rsplit("/", 1)[-1]]
            kind = payload.get("properties", {}).get("type", {}).get("const")
            # The audio chunk is the one message without a type field.
            found[kind or "user_audio_chunk"] = payload_ref
        return found

    def _validator(self, pointer: str) -> Draft202012Validator:
        if pointer not in self._validators:
            # The whole document is the root, so its "#/components/..." references resolve.
            schema = {**self._document, "$ref": pointer}
            self._validators[pointer] = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[pointer]

    def _errors(self, message: Any, types: dict[str, str], side: str) -> list[str]:
        kind = message_type(message)
        if kind not in types:
            return [f"{side} message type {kind!r} is not in the AsyncAPI"]
        return [
            f"{kind}: {'/'.join(map(str, e.absolute_path)) or '(message)'}: {e.message}"
            for e in self._validator(types[kind]).iter_errors(message)
        ]

    def server_errors(self, message: Any) -> list[str]:
        return self._errors(message, self.server_types, "server")

    def client_errors(self, message: Any) -> list[str]:
        return self._errors(message, self.client_types, "client")


def message_type(message: Any) -> str:
    if isinstance(message, dict) and "type" not in message and "user_audio_chunk" in message:
        return "user_audio_chunk"
    return str(message.get("type")) if isinstance(message, dict) else repr(type(message))


@functools.cache
def spec() -> AsyncApi:
    return AsyncApi()


class Tally:
    """Messages checked, by type, with every error kept: a test asserts none and prints counts."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def check(self, message: Any) -> None:
        checker = spec().server_errors if self.side == "server" else spec().client_errors
        self.counts[message_type(message)] += 1
        self.errors.extend(checker(message))

    def report(self) -> str:
        shown = ", ".join(f"{kind}={n}" for kind, n in sorted(self.counts.items()))
        total = sum(self.counts.values())
        return f"{self.side} messages: {total} ({shown}); errors: {len(self.errors)}"
