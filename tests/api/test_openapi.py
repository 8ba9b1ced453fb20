"""The OpenAPI 3 description: served by the test project (the shop's API plus stepup's), valid,
and true to the real responses. The demo's Swagger UI is tested in tests/demo/test_api.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.contrib.auth.models import Permission
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from stepup.policy.model import FACTOR_KINDS, HTTP_METHODS, OUTCOMES
from tests.api.conftest import API_DECIDE, API_STATUS, API_VERIFY, code, wrong_code

pytestmark = pytest.mark.django_db

STEPUP_PATHS = {"/stepup/api/verify/", "/stepup/api/status/", "/stepup/api/decide/"}
SHOP_PATHS = {"/api/billing/", "/api/transfers/"}


@pytest.fixture
def schema(client: Any) -> dict[str, Any]:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    assert isinstance(document, dict)
    return document


def test_the_schema_is_valid_openapi_3(schema: dict[str, Any]) -> None:
    from drf_spectacular.validation import validate_schema

    validate_schema(schema)  # raises on any violation of the OpenAPI 3.0 JSON schema
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= STEPUP_PATHS | SHOP_PATHS
    assert not [p for p in schema["paths"] if "{format}" in p]  # no .json twins


def test_the_stepup_operations(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    verify = paths["/stepup/api/verify/"]["post"]
    assert set(verify["responses"]) == {"200", "400", "401", "403", "415", "429"}
    assert verify["requestBody"]["content"].keys() == {"application/json"}
    status = paths["/stepup/api/status/"]["get"]
    assert {p["name"] for p in status["parameters"]} >= {"action", "url", "method"}
    decide = paths["/stepup/api/decide/"]["post"]
    assert set(decide["responses"]) == {"200", "400", "401", "403", "415", "503"}
    for operation in (verify, status, decide):
        assert {next(iter(s)) for s in operation["security"]} == {"cookieAuth", "tokenAuth"}
    transfer = paths["/api/transfers/"]["post"]["responses"]["401"]
    assert transfer["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/StepUpRequired"


def test_the_schema_names_the_policy_vocabulary(schema: dict[str, Any], token_api: APIClient) -> None:
    components = schema["components"]["schemas"]
    status = schema["paths"][API_STATUS]["get"]
    method = next(p for p in status["parameters"] if p["name"] == "method")

    assert components["MethodEnum"]["enum"] == list(HTTP_METHODS)
    assert sorted(method["schema"]["enum"]) == sorted(HTTP_METHODS)
    assert components["FactorEnum"]["enum"] == list(FACTOR_KINDS)
    assert components["OutcomeEnum"]["enum"] == list(OUTCOMES)
    for documented in HTTP_METHODS:  # and the API takes every method it documents
        assert token_api.get(API_STATUS, {"action": "a", "method": documented}).status_code == 200, documented


# --- real responses match the description ---------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: ``nullable: true`` becomes a ``null`` alternative."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def check(schema: dict[str, Any], path: str, method: str, response: Any) -> None:
    """Validate a real response against the documented schema for its status code."""
    documented = schema["paths"][path][method]["responses"][str(response.status_code)]
    body_schema = _json_schema(documented["content"]["application/json"]["schema"])
    root = {**body_schema, "components": _json_schema(schema["components"])}
    errors = list(Draft202012Validator(root).iter_errors(response.json()))
    assert errors == [], (path, response.status_code, [e.message for e in errors])


def test_responses_match_the_schema(
    schema: dict[str, Any], token_api: APIClient, user: Any, totp: Any, synced_policies: None
) -> None:
    user.user_permissions.add(
        Permission.objects.get(codename="query_decision", content_type__app_label="stepup")
    )
    transfer = {"amount": "5000.00", "account": "DE89370400440532013000"}
    refused = token_api.post("/api/transfers/", transfer, format="json")
    check(schema, "/api/transfers/", "post", refused)
    check(
        schema,
        API_STATUS,
        "get",
        token_api.get(API_STATUS, {"action": "payments.transfer", "method": "POST"}),
    )
    check(schema, API_STATUS, "get", token_api.get(API_STATUS, {"method": "POST"}))
    check(schema, API_VERIFY, "post", token_api.post(API_VERIFY, {"token": wrong_code(totp)}, format="json"))
    check(schema, API_VERIFY, "post", token_api.post(API_VERIFY, "[", content_type="application/json"))
    throttled = token_api.post(API_VERIFY, {"token": code(totp)}, format="json")
    assert throttled.status_code == 429
    check(schema, API_VERIFY, "post", throttled)
    check(
        schema, API_DECIDE, "post", token_api.post(API_DECIDE, {"action": "payments.transfer"}, format="json")
    )
    check(schema, API_DECIDE, "post", token_api.post(API_DECIDE, {"surprise": 1}, format="json"))
    check(schema, API_VERIFY, "post", APIClient().post(API_VERIFY, {}, format="json"))


def test_a_verified_response_matches_too(schema: dict[str, Any], token_api: APIClient, totp: Any) -> None:
    check(schema, API_VERIFY, "post", token_api.post(API_VERIFY, {"token": code(totp)}, format="json"))
