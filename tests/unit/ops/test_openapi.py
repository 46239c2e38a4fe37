"""The OpenAPI document: a valid OpenAPI 3.1 document listing every route of the table with
the msgspec bodies the handlers really decode and encode."""

from __future__ import annotations

import msgspec
import openapi_spec_validator
import pytest

from tidings.protocol import rest, routes
from tidings.server import openapi


def test_the_document_is_valid_openapi():
    openapi_spec_validator.validate(openapi.document())


@pytest.mark.parametrize("route", routes.ROUTES, ids=lambda r: r.name)
def test_every_route_is_described_with_its_bodies(route):
    operation = openapi.document()["paths"][openapi.openapi_path(route.path)][route.method.lower()]
    assert operation["operationId"] == route.name
    answer = operation["responses"][str(route.status)]
    assert ("content" in answer) == (route.response is not None)
    assert ("requestBody" in operation) == (route.request is not None)
    assert bool(operation["security"]) == (route.auth != "none")
    for param in route.params:
        assert any(p["name"] == param and p["in"] == "path" for p in operation["parameters"])


def test_schemas_are_msgspecs_own():
    components = openapi.document()["components"]["schemas"]
    _, expected = msgspec.json.schema_components([rest.CreateAccount])
    assert components["CreateAccount"] == expected["CreateAccount"]
    assert "invite" in components["CreateAccount"]["properties"]
