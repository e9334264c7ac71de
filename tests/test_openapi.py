"""The OpenAPI document and the application's routes describe the same API, and the document is
what the service validates requests against."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import requests

from bridge.api.openapi import DOCUMENTED_PREFIXES, build_document, documented_routes, operation_of
from bridge.app import create_app
from bridge.settings import Settings
from tests.service import API_KEY, Service

OPENAPI_31_META = "https://spec.openapis.org/oas/3.1/schema/2022-10-07"


def _app(tmp_path: Path):
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}"))


def test_every_api_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    app = _app(tmp_path)
    undocumented = [
        f"{route.method} {route.resource.canonical}"
        for route in documented_routes(app)
        if operation_of(route) is None
    ]
    assert not undocumented, f"routes without an OpenAPI operation: {undocumented}"
    routes = {(route.method.lower(), route.resource.canonical) for route in documented_routes(app)}
    document = build_document(app)
    documented = {
        (method, path) for path, methods in document["paths"].items() for method in methods
    }
    assert documented == routes
    assert all(path.startswith(DOCUMENTED_PREFIXES) for _, path in documented)
    # The ElevenLabs SDK's paths are among them.
    for path in (
        "/v1/convai/batch-calling/submit",
        "/v1/convai/batch-calling/workspace",
        "/v1/convai/batch-calling/{batch_id}",
        "/v1/convai/batch-calling/{batch_id}/cancel",
        "/v1/convai/batch-calling/{batch_id}/retry",
        "/v1/convai/twilio/outbound-call",
        "/v1/convai/twilio/register-call",
    ):
        assert path in document["paths"]


def test_document_is_valid_openapi_31_and_refs_resolve(tmp_path: Path) -> None:
    document = build_document(_app(tmp_path))
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    for path, methods in document["paths"].items():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    # Each schema compiles and every $ref in it resolves within the document.
                    root = {**media["schema"], "components": {"schemas": schemas}}
                    jsonschema.Draft202012Validator.check_schema(root)
                    validator = jsonschema.Draft202012Validator(root)
                    if not status.startswith("4"):
                        continue
                    if not path.startswith("/v1/convai/"):
                        assert validator.is_valid({"error": {"code": "x", "message": "y"}})
                    elif status == "422":
                        # ElevenLabs' own shape on its routes (FastAPI's HTTPValidationError).
                        item = {"loc": ["body", "x"], "msg": "y", "type": "z"}
                        assert validator.is_valid({"detail": [item]})
                    else:
                        assert validator.is_valid({"detail": {"status": "x", "message": "y"}})


def test_served_document_docs_page_and_body_validation(service: Service) -> None:
    # The document and the docs page need no key; everything else does.
    document = requests.get(f"{service.url}/api/openapi.json", timeout=10).json()
    page = requests.get(f"{service.url}/api/docs", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "/v1/convai/batch-calling/submit" in page.text
    assert requests.get(f"{service.url}/api/v1/campaigns", timeout=10).status_code == 401
    assert "/api/v1/campaigns" in document["paths"]

    # A body that breaks the declared schema is refused with the schema's own words.
    bad = service.api("POST", "/api/v1/campaigns", json={"name": "x", "max_attempts": "three"})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["details"][0]["field"] == "max_attempts"
    unknown = service.api("POST", "/api/v1/campaigns", json={"name": "x", "colour": "red"})
    assert unknown.status_code == 422
    not_json = service.api(
        "POST", "/api/v1/campaigns", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "bad_json"
    bad_query = service.api("GET", "/api/v1/campaigns?per_page=5000")
    assert bad_query.status_code == 400 and bad_query.json()["error"]["code"] == "bad_query"
    # Nothing was created by the refused requests.
    listing = service.api("GET", "/api/v1/campaigns")
    assert listing.json() == [] and listing.headers["X-Total-Count"] == "0"
    # The ElevenLabs header works as well as the bearer one.
    xi = requests.get(
        f"{service.url}/api/v1/campaigns", headers={"xi-api-key": API_KEY}, timeout=10
    )
    assert xi.status_code == 200
