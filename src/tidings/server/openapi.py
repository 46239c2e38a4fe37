"""The REST API's OpenAPI 3.1 document, made from the route table
(:mod:`tidings.protocol.routes`) and the msgspec bodies it names, so it describes exactly what the
handlers decode and encode (they take raw bodies, which the framework could not see). Served at
``/openapi.json`` and rendered as plain HTML at ``/docs`` (:mod:`tidings.server.ops`)."""

from __future__ import annotations

import functools
import html
import re
from typing import Any

import msgspec

import tidings
from tidings.protocol import rest, routes

_PLACEHOLDER = re.compile(r"\{(\w+):(str|int)\}")
_REF = "#/components/schemas/{name}"
#: Query parameters are all integers.
_QUERY_TYPES = {
    "after": "integer",
    "before": "integer",
    "limit": "integer",
    "device": "integer",
    "start": "string",
}

#: Routes served beside the table: (method, path, summary).
OPERATIONS_EXTRA = (
    ("GET", "/v1/ready", "readiness: 200 when the store is open and its writer takes work"),
)


def openapi_path(path: str) -> str:
    return _PLACEHOLDER.sub(r"{\1}", path)


@functools.cache
def document() -> dict[str, Any]:
    bodies: list[Any] = [rest.ApiError]
    for route in routes.ROUTES:
        for body in (route.request, route.response):
            if body is not None:
                bodies.append(body)
    schemas, components = msgspec.json.schema_components(bodies, ref_template=_REF)
    schema_of = dict(zip(map(repr, bodies), schemas, strict=True))
    error = {
        "description": "an error: its code and a message",
        "content": {"application/json": {"schema": schema_of[repr(rest.ApiError)]}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.ROUTES:
        parameters = [
            {
                "name": m.group(1),
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if m.group(2) == "int" else "string"},
            }
            for m in _PLACEHOLDER.finditer(route.path)
        ] + [
            {"name": q, "in": "query", "required": False, "schema": {"type": _QUERY_TYPES[q]}}
            for q in route.query
        ]
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.name.replace("_", " "),
            "responses": {"default": error},
        }
        if parameters:
            operation["parameters"] = parameters
        if route.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[repr(route.request)]}},
            }
        if route.response is None:
            operation["responses"][str(route.status)] = {"description": "done, no body"}
        else:
            operation["responses"][str(route.status)] = {
                "description": "success",
                "content": {"application/json": {"schema": schema_of[repr(route.response)]}},
            }
        if route.auth == "device":
            operation["security"] = [{"device": []}]
        elif route.auth == "provisioning":
            operation["security"] = [{"provisioning": []}]
        else:
            operation["security"] = []
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation
    for method, path, summary in OPERATIONS_EXTRA:
        paths.setdefault(path, {})[method.lower()] = {
            "operationId": path.rsplit("/", 1)[-1],
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings REST API",
            "version": tidings.__version__,
            "description": (routes.__doc__ or "").strip()
            + f"\n\nThe WebSocket protocol ({routes.WEBSOCKET_PATH}) is described in"
            " docs/protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "device": {"type": "http", "scheme": "bearer", "description": "device token"},
                "provisioning": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the provisioning secret of a device link request",
                },
            },
        },
    }


def document_json() -> bytes:
    return msgspec.json.encode(document())


def _schema_name(content: dict[str, Any] | None) -> str:
    if not content:
        return ""
    schema = content["application/json"]["schema"]
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
        return "list of " + str(schema["items"]["$ref"]).rsplit("/", 1)[-1]
    return str(schema.get("type", ""))


@functools.cache
def docs_html() -> str:
    """The document as one plain HTML page (no script, nothing loaded from elsewhere)."""
    doc = document()
    rows = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            body = _schema_name(op.get("requestBody", {}).get("content"))
            answers = ", ".join(
                f"{status} {_schema_name(answer.get('content'))}".strip()
                for status, answer in op["responses"].items()
                if status != "default"
            )
            auth = "device token" if op["security"] else "none"
            if op["security"] == [{"provisioning": []}]:
                auth = "provisioning secret"
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(cell)}</td>"
                    for cell in (method.upper(), path, op["summary"], body, answers, auth)
                )
                + "</tr>"
            )
    schemas = "".join(
        f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
        f"<pre>{html.escape(msgspec.json.format(msgspec.json.encode(schema)).decode())}</pre>"
        for name, schema in sorted(doc["components"]["schemas"].items())
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tidings REST API</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}td{padding:2px 8px}"
        "tr:nth-child(even){background:#eee}pre{background:#f6f6f6;padding:8px}</style>"
        f"</head><body><h1>Tidings REST API {html.escape(doc['info']['version'])}</h1>"
        "<p>The machine-readable document: <a href='/openapi.json'>/openapi.json</a>"
        " (OpenAPI 3.1).</p><table><tr><th>Method</th><th>Path</th><th>What</th>"
        "<th>Body</th><th>Answers</th><th>Auth</th></tr>"
        + "".join(rows)
        + "</table><h2>Schemas</h2>"
        + schemas
        + "</body></html>"
    )
