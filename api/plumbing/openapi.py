"""The OpenAPI document: what FastAPI derives from the routes, plus what they cannot
declare themselves (the bearer scheme, app-wide problem answers, `X-Request-ID`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.plumbing import problems

BEARER = "bearerAuth"
REQUEST_ID_HEADER = {
    "description": "the client's `X-Request-ID` if well formed, else a new id",
    "schema": {"type": "string"},
    "required": True,
}

# `JobSubmit` takes exactly one of `inputs` and `input_uri` (a model validator, which
# pydantic cannot turn into JSON Schema); the document says so here.
ONE_INPUT = {
    "oneOf": [
        {
            "required": ["inputs"],
            "properties": {"inputs": {"type": "object"}, "input_uri": {"type": "null"}},
        },
        {
            "required": ["input_uri"],
            "properties": {"input_uri": {"type": "string"}, "inputs": {"type": "null"}},
        },
    ]
}


def documented_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi` plus what routes cannot declare themselves.

    The bearer scheme on every /v1 operation (in place of the raw `authorization` header
    parameter that `get_principal` reads, so /docs shows the Authorize button), the
    problem+json answers of the app-wide checks (`problems.document`), and the
    `X-Request-ID` header on every response.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        problems.document(schema)
        components = schema["components"]
        components["schemas"]["JobSubmit"].update(ONE_INPUT)
        components["securitySchemes"] = {
            BEARER: {"type": "http", "scheme": "bearer", "description": "an API key"}
        }
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                for answer in operation["responses"].values():
                    answer.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER
                if not path.startswith("/v1/"):
                    continue
                operation["security"] = [{BEARER: []}]
                parameters = [
                    p
                    for p in operation.get("parameters", [])
                    if not (p["in"] == "header" and p["name"].lower() == "authorization")
                ]
                if parameters:
                    operation["parameters"] = parameters
                else:
                    operation.pop("parameters", None)
        return schema

    return openapi
