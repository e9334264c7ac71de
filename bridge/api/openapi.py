"""OpenAPI 3.1 declared next to the routes it describes, and the request checks it implies.

Each route module makes one ``Api`` and declares its routes through it::

    api = Api("campaigns")
    CAMPAIGN = api.schema("Campaign", {"type": "object", ...})

    @api.post("/api/v1/campaigns", summary="Create a campaign",
              body=api.schema("CampaignCreate", {...}), responses={201: CAMPAIGN})
    async def create(request):
        spec = body_of(request)          # parsed and validated against CampaignCreate

    app.add_routes(api.routes)           # an ordinary RouteTableDef

The document at /api/openapi.json is assembled from the routes the application actually has: every
route under ``/api/`` and ``/v1/`` carries its operation (put there by the decorator), so a route
added without one is found by tests/test_openapi.py, and the document cannot name a route the
router lacks. Declared query parameters are parsed (integers, numbers, booleans) and checked, and
JSON bodies are validated with jsonschema against the same schemas before the handler runs.

Each operation also states the scope a key needs for it (campaigns.api_key_store.SCOPES): the
module's own (``Api("api-keys", scope="admin")``), else ``scope=`` on the route, else by method:
``read`` for GET, ``write`` for everything else. The document shows it as the scopes of the
operation's security requirement and as ``x-required-scope``; bridge/api/auth.py enforces it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jsonschema
from aiohttp import web

from bridge.api.bodies import read_json
from bridge.api.errors import ELEVENLABS_PREFIX, ApiError
from campaigns.api_key_store import READ, SCOPES, WRITE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

# Path prefixes the document covers: our REST API and the ElevenLabs-compatible endpoints.
DOCUMENTED_PREFIXES = ("/api/", "/v1/")
_BODY = web.RequestKey("validated_body", object)
_QUERY = web.RequestKey("validated_query", dict)

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}
# The ElevenLabs-compatible routes' errors, as ElevenLabs answers them (bridge/api/errors.py).
VALIDATION_ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        }
    },
}
DETAIL_ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {"status": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
COMMON_SCHEMAS: dict[str, Schema] = {
    "Error": ERROR_SCHEMA,
    "HTTPValidationError": VALIDATION_ERROR_SCHEMA,
    "DetailError": DETAIL_ERROR_SCHEMA,
}
PAGE_QUERY: dict[str, Schema] = {
    # Bounded so that (page - 1) * per_page stays a 64-bit OFFSET.
    "page": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
    "per_page": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
}
PAGE_HEADERS: dict[str, Schema] = {
    "X-Total-Count": {"type": "integer"},
    "X-Page": {"type": "integer"},
    "X-Per-Page": {"type": "integer"},
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (OpenAPI 3.1 is JSON Schema 2020-12: no ``nullable`` keyword)."""
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True)
class Response:
    schema: Schema | None = None
    description: str = "OK"
    content_type: str = "application/json"
    headers: dict[str, Schema] = field(default_factory=dict)


@dataclass
class Operation:
    api: Api
    method: str
    path: str
    summary: str
    description: str
    body: Schema | None
    body_content_type: str
    # Other accepted body types, documented but not parsed here (a CSV upload).
    other_bodies: dict[str, Schema]
    body_required: bool
    query: dict[str, Schema]
    required_query: frozenset[str]
    responses: dict[int, Response]
    public: bool
    operation_id: str
    # The scope a key needs (None for a public route).
    scope: str | None = None

    def document(self) -> dict[str, Any]:
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(self.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": name in self.required_query, "schema": s}
            for name, s in self.query.items()
        ]
        responses: dict[str, Any] = {}
        for status, response in sorted(self.responses.items()):
            entry: dict[str, Any] = {"description": response.description}
            if response.schema is not None:
                entry["content"] = {response.content_type: {"schema": response.schema}}
            if response.headers:
                entry["headers"] = {
                    name: {"schema": schema} for name, schema in response.headers.items()
                }
            responses[str(status)] = entry
        if self.path.startswith(ELEVENLABS_PREFIX):
            responses.setdefault(
                "422",
                {
                    "description": "Validation Error",
                    "content": {"application/json": {"schema": ref("HTTPValidationError")}},
                },
            )
            responses["4XX"] = {
                "description": "A request the service refuses (unknown id, no key, ...)",
                "content": {"application/json": {"schema": ref("DetailError")}},
            }
        else:
            responses["4XX"] = {
                "description": "A request the service refuses (bad input, unknown id, no key, ...)",
                "content": {"application/json": {"schema": ref("Error")}},
            }
        operation: dict[str, Any] = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "tags": [self.api.tag],
            "parameters": parameters,
            "responses": responses,
        }
        description = self.description
        if self.scope is not None:
            above = SCOPES[SCOPES.index(self.scope) + 1 :]
            needs = f"Needs an API key of scope `{self.scope}`" + (
                f" (or {' or '.join(f'`{s}`' for s in above)})." if above else "."
            )
            description = f"{description}\n\n{needs}" if description else needs
            operation["security"] = [{"bearer": [self.scope]}, {"xiApiKey": [self.scope]}]
            operation["x-required-scope"] = self.scope
        if description:
            operation["description"] = description
        if self.body is not None or self.other_bodies:
            content = {t: {"schema": s} for t, s in self.other_bodies.items()}
            if self.body is not None:
                content[self.body_content_type] = {"schema": self.body}
            operation["requestBody"] = {"required": self.body_required, "content": content}
        if self.public:
            operation["security"] = []
        return operation

    @cached_property
    def _body_validator(self) -> jsonschema.protocols.Validator:
        # The body schema may name any schema of its module (or a common one) by $ref.
        root = {**(self.body or {}), "components": {"schemas": self.api.all_schemas()}}
        return jsonschema.Draft202012Validator(root)

    def validated_body(self, body: Any) -> Any:
        if _has_nul(body):
            raise ApiError(422, "invalid_body", NUL_MESSAGE)
        errors = sorted(self._body_validator.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            details = [
                {"field": ".".join(str(p) for p in error.path) or None, "message": error.message}
                for error in errors[:20]
            ]
            raise ApiError(
                422, "invalid_body", f"request body is invalid: {errors[0].message}", details
            )
        return body

    def parsed_query(self, request: web.Request) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, schema in self.query.items():
            raw = request.query.get(name)
            if raw is not None and "\x00" in raw:
                raise ApiError(
                    400, "bad_query", f"query parameter {name}: {NUL_MESSAGE}", {"query": name}
                )
            if raw is None:
                if name in self.required_query:
                    raise ApiError(
                        400, "bad_query", f"query parameter {name} is required", {"query": name}
                    )
                if "default" in schema:
                    values[name] = schema["default"]
                continue
            value = _coerce(name, raw, schema)
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(value)
            )
            if error is not None:
                raise ApiError(
                    400, "bad_query", f"query parameter {name}: {error.message}", {"query": name}
                )
            values[name] = value
        return values


def _coerce(name: str, raw: str, schema: Schema) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError as exc:
        raise ApiError(
            400, "bad_query", f"query parameter {name} must be a number ({kind})", {"query": name}
        ) from exc
    if kind == "boolean":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ApiError(
                400, "bad_query", f"query parameter {name} must be true or false", {"query": name}
            )
        return raw.lower() in ("true", "1")
    return raw


NUL_MESSAGE = "text must not contain NUL characters"


def _has_nul(value: Any) -> bool:
    """NUL cannot be stored in PostgreSQL text, and means nothing in any field of ours."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


class Api:
    """The routes of one module together with their OpenAPI operations and schemas."""

    def __init__(self, tag: str, description: str = "", *, scope: str | None = None) -> None:
        self.tag = tag
        self.description = description
        # The scope every route of the module needs; None: by method (see the module docstring).
        self.scope = scope
        self.routes = web.RouteTableDef()
        self.schemas: dict[str, Schema] = {}
        self.operations: list[Operation] = []

    def schema(self, name: str, schema: Schema) -> Schema:
        """Register a named schema; returns a $ref to it."""
        if name in self.schemas or name in COMMON_SCHEMAS:
            raise ValueError(f"schema {name} declared twice")
        self.schemas[name] = schema
        return ref(name)

    def all_schemas(self) -> dict[str, Schema]:
        return {**COMMON_SCHEMAS, **self.schemas}

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        description: str = "",
        body: Schema | None = None,
        body_content_type: str = "application/json",
        other_bodies: dict[str, Schema] | None = None,
        body_required: bool = True,
        query: dict[str, Schema] | None = None,
        required_query: Iterable[str] = (),
        responses: dict[int, Schema | Response | None] | None = None,
        public: bool = False,
        scope: str | None = None,
    ) -> Callable[[Handler], Handler]:
        needed = scope or self.scope or (READ if method.upper() == "GET" else WRITE)
        if needed not in SCOPES:
            raise ValueError(f"unknown scope {needed!r} for {method} {path}")

        def decorate(handler: Handler) -> Handler:
            operation = Operation(
                api=self,
                method=method.upper(),
                path=path,
                summary=summary,
                description=description,
                body=body,
                body_content_type=body_content_type,
                other_bodies=dict(other_bodies or {}),
                body_required=body_required,
                query=dict(query or {}),
                required_query=frozenset(required_query),
                responses={
                    status: value if isinstance(value, Response) else Response(value)
                    for status, value in (responses or {200: None}).items()
                },
                public=public,
                operation_id=f"{self.tag}_{handler.__name__}",
                scope=None if public else needed,
            )
            parse_json = body is not None and body_content_type == "application/json"

            async def checked(request: web.Request) -> web.StreamResponse:
                if operation.query:
                    request[_QUERY] = operation.parsed_query(request)
                if parse_json and _wants_json(operation, request):
                    request[_BODY] = operation.validated_body(await read_json(request))
                return await handler(request)

            checked.__name__ = handler.__name__
            checked.__doc__ = handler.__doc__
            checked.openapi = operation  # type: ignore[attr-defined]
            self.operations.append(operation)
            self.routes.route(operation.method, path)(checked)
            return checked

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


def _wants_json(operation: Operation, request: web.Request) -> bool:
    if operation.other_bodies:
        # Several body types: only a JSON one is parsed here; the handler reads the others.
        return request.content_type == "application/json"
    return operation.body_required or request.can_read_body


def body_of(request: web.Request) -> Any:
    """The request's JSON body, validated against the operation's schema (None if absent)."""
    return request.get(_BODY)


def query_of(request: web.Request) -> dict[str, Any]:
    """The operation's declared query parameters, parsed, checked, with their defaults."""
    return dict(request.get(_QUERY, {}))


def operation_of(route: web.AbstractRoute) -> Operation | None:
    return getattr(route.handler, "openapi", None)


def documented_routes(app: web.Application) -> Iterable[web.AbstractRoute]:
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method != "HEAD" and path.startswith(DOCUMENTED_PREFIXES):
            yield route


def build_document(app: web.Application, *, server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Schema] = dict(COMMON_SCHEMAS)
    tags: dict[str, str] = {}
    for route in documented_routes(app):
        operation = operation_of(route)
        if operation is None:
            continue  # tests/test_openapi.py fails on such a route
        paths.setdefault(operation.path, {})[operation.method.lower()] = operation.document()
        tags.setdefault(operation.api.tag, operation.api.description)
        for name, schema in operation.api.schemas.items():
            if schemas.get(name, schema) != schema:
                raise ValueError(f"two modules declare different schemas named {name}")
            schemas[name] = schema
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "callbridge",
            "version": "1",
            "description": (
                "Outbound calling campaigns on your own Twilio account. Authenticate with "
                "`Authorization: Bearer <key>` or `xi-api-key: <key>`. Keys have a scope, and "
                "scopes nest: `admin` (keys, webhook subscriptions) includes `write` (campaigns, "
                "calls, contacts, do-not-call, batch calls) includes `read` (GET). Each "
                "operation names the scope it needs (`x-required-scope`, and the scopes of its "
                "security requirement); a key without it gets 403 `insufficient_scope`."
            ),
        },
        "tags": [{"name": t, "description": d} for t, d in sorted(tags.items())],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key; its scope: read, write or admin",
                },
                "xiApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "xi-api-key",
                    "description": "An API key; its scope: read, write or admin",
                },
            },
        },
        "security": [{"bearer": []}, {"xiApiKey": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


# -- the document and the docs page ------------------------------------------------------------

api = Api("documentation", "This document and its human-readable page.")


@api.get(
    "/api/openapi.json",
    summary="The OpenAPI 3.1 document of this service",
    responses={200: {"type": "object"}},
    public=True,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))


@api.get(
    "/api/docs",
    summary="This API, as a page for people",
    responses={200: Response({"type": "string"}, content_type="text/html")},
    public=True,
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=render_docs(build_document(request.app)), content_type="text/html")


def render_docs(document: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no CDN): operations grouped by tag, then the schemas."""
    e = html.escape
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            by_tag.setdefault(operation["tags"][0], []).append((method, path, operation))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>callbridge API</title>",
        "<style>body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}"
        "code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}"
        ".m{display:inline-block;min-width:4.5rem;font-weight:bold}</style></head><body>",
        f"<h1>{e(document['info']['title'])} API</h1>",
        f"<p>{e(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    tag_text = {t["name"]: t["description"] for t in document["tags"]}
    for tag in sorted(by_tag):
        parts.append(f"<h2>{e(tag)}</h2><p>{e(tag_text.get(tag, ''))}</p>")
        for method, path, operation in by_tag[tag]:
            parts.append(
                f"<h3><span class='m'>{e(method.upper())}</span><code>{e(path)}</code></h3>"
                f"<p>{e(operation['summary'])}</p>"
            )
            if operation.get("description"):
                parts.append(f"<p>{e(operation['description'])}</p>")
            params = [p for p in operation["parameters"] if p["in"] == "query"]
            if params:
                items = "".join(
                    f"<li><code>{e(p['name'])}</code> {e(json.dumps(p['schema']))}</li>"
                    for p in params
                )
                parts.append(f"<p>Query:</p><ul>{items}</ul>")
            if "requestBody" in operation:
                for content_type, media in operation["requestBody"]["content"].items():
                    schema = e(json.dumps(media["schema"]))
                    parts.append(f"<p>Body ({e(content_type)}): <code>{schema}</code></p>")
            statuses = ", ".join(k for k in operation["responses"])
            parts.append(f"<p>Responses: {e(statuses)}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(
            f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{e(json.dumps(schema, indent=2))}</pre>"
        )
    parts.append("</body></html>")
    return "".join(parts)
