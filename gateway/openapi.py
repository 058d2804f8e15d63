"""The OpenAPI document, generated from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from gateway import __version__
from gateway import events as ev

_PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {"type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}},
        },
    },
}


def _json_body(ref: str, required: bool = True) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {
        "required": required,
        "content": {"application/json": {"schema": schema}, "text/plain": {"schema": schema}},
    }


def _problems(*codes: int) -> dict[str, Any]:
    return {
        str(code): {"description": "problem", "content": {"application/problem+json": {"schema": _PROBLEM}}}
        for code in codes
    }


_SESSION_PATH = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_TOKEN_QUERY = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                "description": "the ingest token, for sendBeacon which cannot set headers"}


@cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    event_schema = TypeAdapter(ev.Event).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(event_schema.pop("$defs", {}))
    schemas["Event"] = event_schema
    schemas["EventBatch"] = {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "sent_at": {"type": "number", "description": "client time of sending, ms since the epoch"},
        },
    }
    schemas["EventsBody"] = {"oneOf": [{"$ref": "#/components/schemas/Event"},
                                       {"$ref": "#/components/schemas/EventBatch"}]}
    for model in (ev.SessionCreate, ev.EndRequest):
        s = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(s.pop("$defs", {}))
        schemas[model.__name__] = s
    end = schemas["EndRequest"]
    end.setdefault("properties", {})["events"] = {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
    end["properties"]["sent_at"] = {"type": "number"}
    auth: list[dict[str, list[str]]] = [{"ingestToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Voice Trace Gateway", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"ingestToken": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/sessions": {"post": {
                "summary": "Start a voice session",
                "requestBody": _json_body("SessionCreate", required=False),
                "responses": {"201": {"description": "session started"}, **_problems(400, 409, 413, 422)},
            }},
            "/v1/sessions/{session_id}": {"get": {
                "summary": "Live state and running summary of a session",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "responses": {"200": {"description": "session"}, **_problems(401, 403, 404)},
            }},
            "/v1/sessions/{session_id}/events": {"post": {
                "summary": "Report events",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("EventsBody"),
                "responses": {"202": {"description": "accepted, duplicates and rejected counts"},
                              **_problems(400, 401, 403, 404, 409, 413, 422)},
            }},
            "/v1/sessions/{session_id}/end": {"post": {
                "summary": "End a session",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("EndRequest", required=False),
                "responses": {"200": {"description": "the session summary"},
                              **_problems(400, 401, 403, 404, 413, 422)},
            }},
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Accepting traffic", "responses": {
                "200": {"description": "ready"}, "503": {"description": "starting or draining"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "metrics"}}}},
        },
    }
