"""The OpenAPI 3.1 document, generated from the operation table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ledger.api.operations import OPERATIONS, Operation
from ledger.models import ErrorOut

REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "Malformed or out-of-range input",
    "401": "Missing or unknown API key",
    "403": "The key's role may not do this (or a till named a member without their code)",
    "404": "Unknown id or code",
    "409": "Conflict: code used or revoked, idempotency key reused, identity in use, refund "
    "refused (with the reason), the member's purchases of the day at this merchant capped",
    "410": "Expired code or invite",
    "415": "A body not sent as application/json in UTF-8",
    "429": "Throttled: too many unknown codes from a till, or unknown API keys from an address",
    "503": "Storage unavailable; retry",
}


def _schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for op in OPERATIONS:
        models.append((op.response, "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template=REF)
    return refs, top.get("$defs", {})


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is a string or absent, never JSON null: ``X | None = None`` in a query
    model means "optional", which ``required: false`` already says."""
    branches = prop.get("anyOf", [])
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **rest}


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _without_null(prop)}
        for name, prop in schema.get("properties", {}).items()
    ]


def document() -> dict[str, Any]:
    refs, components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
            }
            for name in op.path_params
        ] + _query_parameters(op)
        content: dict[str, Any] = {
            "application/json": {"schema": refs[(op.response, "serialization")]}
        }
        if op.csv is not None:
            content["text/csv"] = {"schema": {"type": "string"}}
        responses: dict[str, Any] = {str(op.status): {"description": "OK", "content": content}}
        error_schema = refs[(ErrorOut, "serialization")]
        for status, text in _ERRORS.items():
            if op.public and status in ("401", "403"):
                continue
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": error_schema}},
            }
        item: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "security": [] if op.public else [{"bearer": []}],
            "parameters": parameters,
            "responses": responses,
        }
        if op.body is not None:
            item["requestBody"] = {
                # A missing body is read as {}, so it is required only if a field is.
                "required": any(f.is_required() for f in op.body.model_fields.values()),
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = item
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness and database reachability.",
            "security": [],
            "responses": {
                "200": {
                    "description": "Healthy",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"status": {"type": "string"}},
                                "required": ["status"],
                            }
                        }
                    },
                },
                "503": {
                    "description": "Database unreachable",
                    "content": {"application/json": {"schema": refs[(ErrorOut, "serialization")]}},
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Green Points ledger", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }
