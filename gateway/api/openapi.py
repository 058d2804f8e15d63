"""The OpenAPI document, its request schemas generated from the same msgspec structs that decode requests.

Every route the app serves is here except the HTML pages (``/ui``, ``/demo``), the static files and this
document itself; tests/test_openapi.py holds it to that, and tests/test_fuzz.py fuzzes every operation.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import msgspec

from gateway import __version__
from gateway import events as ev
from gateway.api.legacy import LEGACY_TYPES
from gateway.events import MAX_TOOL_NAME
from gateway.settings import TEXT_CONTENT_KINDS

PROBLEM_JSON = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_OBJ = {"type": "object"}

_PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; validation failures name each bad field by its path",
    "required": ["type", "title", "status"],
    "properties": {
        "type": _STR,
        "title": _STR,
        "status": _INT,
        "detail": _STR,
        "instance": _STR,
        "errors": {
            "type": "array",
            "items": {"type": "object", "required": ["path", "message"],
                      "properties": {"path": {"type": "string", "description": "e.g. events[2].call_id, data.toolName"},
                                     "message": _STR}},
        },
        "provider": {"type": "string", "description": "on a 502 from minting: the provider that failed"},
        "provider_status": {"type": ["integer", "null"],
                            "description": "on a 502 from minting: its HTTP status; null if it never answered"},
    },
}

_PROBLEM_MEANINGS = {
    400: "the body is not valid JSON",
    401: "no credential, or one that does not verify",
    403: "forbidden",
    404: "no such session",
    409: "conflict",
    415: "unsupported media type",
    416: "range not satisfiable",
    413: "the body (or the number of events in it) is over the limit",
    422: "validation failed; 'errors' names each bad field",
    501: "not implemented by this gateway's configuration",
    502: "an upstream service failed",
    429: "a rate limit; retry after the Retry-After delay",
    503: "the process holds as many open sessions as it may; retry after the Retry-After delay",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def _json_body(ref: str, required: bool = True) -> dict[str, Any]:
    # Any content type is read as JSON: sendBeacon sends its strings as text/plain.
    schema = _ref(ref)
    return {
        "required": required,
        "content": {"application/json": {"schema": schema}, "text/plain": {"schema": schema}},
    }


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(ref)}}}


def _problems(*codes: int, **meanings: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        response: dict[str, Any] = {
            "description": meanings.get(f"m{code}", _PROBLEM_MEANINGS[code]),
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
        if code in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[str(code)] = response
    return out


_SESSION_PATH = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_TOKEN_QUERY = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                "description": "the ingest token, for sendBeacon which cannot set headers"}
_KEY_QUERY = {"name": "key", "in": "query", "required": False, "schema": {"type": "string"},
              "description": "the admin key, when VTG_ADMIN_KEY is set (or send it as 'Authorization: Bearer')"}
_TRACE_PATH = {"name": "trace_id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "32 lowercase hex digits"}

_M403_TOKEN = "the ingest token belongs to another session"
_M401_API_KEY = "API keys are configured (VTG_API_KEYS) and none, or an unknown one, was presented"
_M403_FORWARD = "the forward auth endpoint (VTG_FORWARD_AUTH_URL) refused the request's credentials"
_M502_PROVIDER = "the provider refused, failed or timed out minting a token; 'provider' and 'provider_status' say which"
_M503_CREATE = ("the process holds as many open sessions as it may, the forward auth endpoint is down, or the "
                "provider's API key is not configured; retry after the Retry-After delay")
_M403_VIEWER = "not a loopback client while no admin key is set, or a wrong admin key"


def _response_schemas(event_ts: dict[str, Any], session_create: dict[str, Any]) -> dict[str, Any]:
    """Schemas of the answers (and of the legacy bodies, which no struct decodes)."""
    ids = {"session_id": _STR, "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
    created = {
        "type": "object",
        "required": ["session_id", "trace_id", "root_span_id", "traceparent", "sampled", "token", "expires_at",
                     "idle_timeout_s", "capture"],
        "properties": {
            **ids,
            "root_span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "traceparent": {"type": "string", "description": "W3C traceparent of the session's root span"},
            "sampled": {"type": "boolean"},
            "token": {"type": "string", "description": "the ingest token: present it on every write"},
            "expires_at": {"type": "number", "description": "when the token expires, s since the epoch"},
            "idle_timeout_s": _NUM,
            "provider_token": {
                "type": "object", "required": ["provider", "value", "expires_at"],
                "description": "the provider's ephemeral client token, when the operator mints for the session's "
                               "provider (VTG_PROVIDER_TOKENS)",
                "properties": {"provider": {"type": "string", "enum": ["gemini", "openai"]}, "value": _STR,
                               "expires_at": {"type": "number", "description": "s since the epoch"}},
            },
            "capture": {"type": "array", "items": {"enum": list(TEXT_CONTENT_KINDS)}, "uniqueItems": True,
                        "description": "the content this session keeps (capture_content); the client sends "
                                       "no words, tool arguments or tool results outside it"},
            "recording": {"type": "object", "required": ["enabled"],
                          "description": "whether this call's audio is recorded (gateway/recordings), and its limits",
                          "properties": {"enabled": {"type": "boolean"}, "reason": _STR, "channel_layout": _STR,
                                         "content_types": {"type": "array", "items": _STR},
                                         "max_chunk_bytes": _INT, "max_bytes": _INT, "max_duration_s": _NUM,
                                         "grace_s": _NUM}},
        },
    }
    rejected = {"type": "array", "items": {
        "type": "object", "required": ["index", "errors"],
        "properties": {"index": _INT, "errors": _PROBLEM["properties"]["errors"]},
    }}
    ingest = {"type": "object", "required": ["accepted", "duplicates", "rejected"],
              "properties": {"accepted": _INT, "duplicates": _INT, "rejected": rejected}}
    summary = {
        "type": "object",
        "required": ["session_id", "trace_id", "duration_ms", "end_reason", "turns", "interruptions", "tool_calls",
                     "errors", "usage", "cost"],
        "properties": {
            **ids, "duration_ms": _NUM, "end_reason": _nullable(_STR), "turns": _INT, "interruptions": _INT,
            "tool_calls": _INT, "connections": _INT, "errors": _INT, "tool_errors": _INT,
            "usage": _OBJ, "latency": _OBJ, "cost": _nullable(_OBJ),
            "events": {**_ref("IngestResult"), "description": "the final events' outcome, when the body had some"},
        },
    }
    session = {
        "type": "object",
        "required": ["session_id", "trace_id", "root_span_id", "sampled", "ended", "open_spans", "summary"],
        "properties": {
            **ids, "root_span_id": _STR, "sampled": {"type": "boolean"}, "ended": {"type": "boolean"},
            "user_id": _nullable(_STR), "provider": _nullable(_STR), "model": _nullable(_STR),
            "agent": _nullable(_STR), "tags": {"type": "array", "items": _STR}, "idle_s": _NUM,
            "open_turn": _nullable(_INT), "open_spans": {"type": "array", "items": _STR},
            "summary": _ref("SessionSummary"),
        },
    }

    # -- the legacy routes (DESIGN §3.4) --
    def legacy(kind: str, data: dict[str, Any], data_required: bool) -> dict[str, Any]:
        data_schema = {"type": "object", "properties": {"turnNumber": _nullable({"type": ["number", "string"]}),
                                                        **data}}
        if data_required:
            data_schema["required"] = ["toolName"]
        return {
            "type": "object",
            "required": ["sessionId", "type", *(["data"] if data_required else [])],
            "properties": {
                "sessionId": {"type": "string", "minLength": 1},
                "token": {"type": "string", "description": "the ingest token, if no header or ?token= carries it"},
                "type": {"const": kind},
                "timestamp": {**event_ts, "description": "ms since the epoch, or ISO 8601"},
                "data": data_schema if data_required else _nullable(data_schema),
            },
        }

    tool_name = {"type": "string", "minLength": 1, "maxLength": MAX_TOOL_NAME}
    duration = {"type": "number", "description": "how long it took, ms: the span starts this long before timestamp"}
    legacy_events = {
        "turn_start": legacy("turn_start", {"userTranscript": _nullable(_STR)}, False),
        "turn_complete": legacy("turn_complete", {"aiTranscript": _nullable(_STR), "durationMs": duration}, False),
        "tool_call": legacy("tool_call", {"toolName": tool_name, "toolArgs": {}}, True),
        "tool_result": legacy("tool_result", {"toolName": tool_name, "result": {}, "error": {},
                                              "durationMs": duration}, True),
    }
    assert tuple(legacy_events) == LEGACY_TYPES
    names = {kind: "Legacy" + kind.title().replace("_", "") for kind in LEGACY_TYPES}
    return {
        "Problem": _PROBLEM,
        "Status": {"type": "object", "required": ["status"],
                   "properties": {"status": {"enum": ["ok", "ready", "starting", "draining"]}}},
        "SessionCreated": created,
        "IngestResult": ingest,
        "SessionSummary": summary,
        "Session": session,
        "LegacyTokenRequest": {
            "type": "object",
            "description": "every field optional; the v1 SessionCreate fields under their legacy names",
            "properties": {legacy_name: copy.deepcopy(session_create[v1_name]) for legacy_name, v1_name in (
                ("sessionId", "session_id"), ("userId", "user_id"), ("model", "model"), ("provider", "provider"),
                ("agent", "agent"))},
        },
        "LegacySessionCreated": {
            "type": "object",
            "description": "the original's {token, expiresAt, sessionId}, and the gateway's own fields under names "
                           "of their own; the ingest token is also set as an HttpOnly cookie for /api/live/trace",
            "required": ["token", "expiresAt", "sessionId", "ingestToken", "ingestTokenExpiresAt", "provider",
                         "traceId", "traceparent"],
            "properties": {
                "token": {"type": "string", "description": "the provider's ephemeral token, for the browser's SDK"},
                "expiresAt": {"type": "string", "format": "date-time", "description": "when that token expires"},
                "sessionId": _STR,
                "ingestToken": {"type": "string", "description": "the session's ingest token (also the cookie)"},
                "ingestTokenExpiresAt": {"type": "number", "description": "s since the epoch"},
                "provider": {"type": "string", "enum": ["gemini", "openai"]},
                "traceId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "traceparent": {"type": "string"},
            },
        },
        **{names[kind]: schema for kind, schema in legacy_events.items()},
        "LegacyEvent": {"oneOf": [_ref(names[kind]) for kind in LEGACY_TYPES],
                        "discriminator": {"propertyName": "type", "mapping": {
                            kind: f"#/components/schemas/{names[kind]}" for kind in LEGACY_TYPES}}},
        "LegacyEnd": {
            "type": "object",
            "required": ["sessionId"],
            "properties": {
                "sessionId": {"type": "string", "minLength": 1},
                "token": {"type": "string", "description": "the ingest token, if no header or ?token= carries it"},
                "reason": {"type": "string", "description": "why it ended (first 256 characters); default completed"},
            },
        },
        "LegacyEndSummary": {
            "type": "object",
            "required": ["traceId", "summary"],
            "properties": {
                "traceId": ids["trace_id"],
                "summary": {"type": "object", "required": ["totalTurns", "totalToolCalls", "durationMs"],
                            "properties": {"totalTurns": _INT, "totalToolCalls": _INT, "durationMs": _NUM}},
            },
        },
        # -- the viewer's API (gateway/api/ui.py) --
        "ViewerSessions": {
            "type": "object",
            "required": ["active", "recent"],
            "properties": {
                "active": {"type": "array", "description": "open sessions, newest first", "items": {
                    "type": "object",
                    "required": ["trace_id", "session_id", "turns", "started_unix_nano", "open_turn", "active"],
                    "properties": {
                        **ids, "user_id": _nullable(_STR), "agent": _nullable(_STR), "model": _nullable(_STR),
                        "turns": _INT, "started_unix_nano": _INT, "open_turn": _nullable(_INT),
                        "active": {"const": True},
                    },
                }},
                "recent": {"type": "array", "description": "finished sessions in the recent-traces buffer", "items": {
                    "type": "object",
                    "required": ["trace_id", "started_unix_nano", "duration_ms", "active"],
                    "properties": {
                        # From the root span's attributes, as exported: absent ones are null.
                        "trace_id": ids["trace_id"], "session_id": {}, "user_id": {}, "agent": {}, "model": {},
                        "end_reason": {}, "turns": {}, "started_unix_nano": _INT, "duration_ms": _NUM,
                        "active": {"const": False},
                    },
                }},
            },
        },
        "ViewerTrace": {
            "type": "object",
            "required": ["trace_id", "now", "spans"],
            "properties": {
                "trace_id": _STR,
                "now": {"type": "integer", "description": "the gateway's clock, ns since the epoch"},
                "spans": {"type": "array", "items": _ref("ViewerSpan")},
            },
        },
        "ViewerSpan": {
            "type": "object",
            "description": "a finished span, or one still open (end_time_unix_nano null, drawn up to 'now')",
            "required": ["name", "trace_id", "span_id", "parent_span_id", "kind", "start_time_unix_nano",
                         "end_time_unix_nano", "attributes", "events", "status"],
            "properties": {
                "name": _STR, "trace_id": _STR, "span_id": _STR, "parent_span_id": _nullable(_STR), "kind": _STR,
                "start_time_unix_nano": _INT, "end_time_unix_nano": _nullable(_INT), "now": _INT,
                "attributes": _OBJ,
                "events": {"type": "array", "items": {
                    "type": "object", "required": ["name", "time_unix_nano", "attributes"],
                    "properties": {"name": _STR, "time_unix_nano": _INT, "attributes": _OBJ},
                }},
                "status": {"type": "object", "required": ["code"],
                           "properties": {"code": {"enum": ["unset", "ok", "error"]},
                                          "description": _nullable(_STR)}},
            },
        },
    }


def _request_schemas() -> dict[str, Any]:
    """The schemas of the events and request bodies, from the structs that decode them."""
    (event, _, _), schemas = msgspec.json.schema_components(
        (ev.Event, ev.SessionCreate, ev.EndRequest), ref_template="#/components/schemas/{name}")
    # A tagged union: exactly one member matches.
    schemas["Event"] = {"oneOf": event["anyOf"], **{k: v for k, v in event.items() if k != "anyOf"}}
    for schema in schemas.values():
        if not schema.get("required", True):
            del schema["required"]  # msgspec lists none as []; JSON Schema says nothing then
    return schemas


@cache
def openapi_document() -> dict[str, Any]:
    schemas = _request_schemas()
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
    end = schemas["EndRequest"]
    end.setdefault("properties", {})["events"] = {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
    end["properties"]["sent_at"] = {"type": "number"}
    schemas.update(_response_schemas(copy.deepcopy(schemas["ToolCall"]["properties"]["ts"]),
                                     schemas["SessionCreate"]["properties"]))
    auth: list[dict[str, list[str]]] = [{"ingestToken": []}]
    api_key: list[dict[str, list[str]]] = [{"apiKey": []}, {}]
    admin: list[dict[str, list[str]]] = [{"adminKey": []}, {}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Voice Trace Gateway", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ingestToken": {"type": "http", "scheme": "bearer",
                                "description": "the session's ingest token (or ?token=, or a legacy body's 'token', or "
                                               "on /api/live/trace/* the cookie /api/live/token set)"},
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "needed to create sessions only when the operator sets VTG_API_KEYS"},
                "adminKey": {"type": "http", "scheme": "bearer",
                             "description": "VTG_ADMIN_KEY (or ?key=); without one set the viewer answers loopback "
                                            "clients only"},
            },
        },
        "paths": {
            "/v1/sessions": {"post": {
                "summary": "Start a voice session",
                "security": api_key,
                "requestBody": _json_body("SessionCreate", required=False),
                "responses": {"201": _json("session started", "SessionCreated"),
                              **_problems(400, 401, 403, 409, 413, 422, 429, 502, 503, m401=_M401_API_KEY,
                                          m403=_M403_FORWARD, m409="the client-chosen session_id is in use",
                                          m502=_M502_PROVIDER, m503=_M503_CREATE)},
            }},
            "/v1/sessions/{session_id}": {"get": {
                "summary": "Live state and running summary of a session",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "responses": {"200": _json("session", "Session"), **_problems(401, 403, 404, m403=_M403_TOKEN)},
            }},
            "/v1/sessions/{session_id}/events": {"post": {
                "summary": "Report events",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("EventsBody"),
                "responses": {"202": _json("accepted, duplicates and rejected counts", "IngestResult"),
                              **_problems(400, 401, 403, 404, 409, 413, 422, 429, m403=_M403_TOKEN,
                                          m409="the session has ended")},
            }},
            "/v1/sessions/{session_id}/end": {"post": {
                "summary": "End a session",
                "parameters": [_SESSION_PATH, _TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("EndRequest", required=False),
                "responses": {"200": _json("the session summary (again, if it had ended)", "SessionSummary"),
                              **_problems(400, 401, 403, 404, 413, 422, 429, m403=_M403_TOKEN)},
            }},
            "/api/live/token": {"post": {
                "summary": "Start a voice session (legacy route, DESIGN §3.4)",
                "security": api_key,
                "requestBody": _json_body("LegacyTokenRequest", required=False),
                "responses": {"200": _json("a provider token and the session it traces", "LegacySessionCreated"),
                              **_problems(400, 401, 403, 409, 413, 422, 429, 501, 502, 503, m401=_M401_API_KEY,
                                          m403=_M403_FORWARD, m409="the client-chosen sessionId is in use",
                                          m501="this gateway mints no provider tokens (VTG_PROVIDER_TOKENS)",
                                          m502=_M502_PROVIDER, m503=_M503_CREATE)},
            }},
            "/api/live/trace/event": {"post": {
                "summary": "Report one legacy event (legacy route, DESIGN §3.4)",
                "parameters": [_TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("LegacyEvent"),
                "responses": {"204": {"description": "recorded (or a duplicate of one that was)"},
                              **_problems(400, 401, 403, 404, 409, 413, 422, 429, m403=_M403_TOKEN,
                                          m409="the session has ended")},
            }},
            "/api/live/trace/end": {"post": {
                "summary": "End a session (legacy route, DESIGN §3.4)",
                "parameters": [_TOKEN_QUERY], "security": auth,
                "requestBody": _json_body("LegacyEnd"),
                "responses": {"200": _json("the trace and the session's totals (again, if it had ended)",
                                           "LegacyEndSummary"),
                              **_problems(400, 401, 403, 404, 413, 422, m403=_M403_TOKEN)},
            }},
            "/ui/api/sessions": {"get": {
                "summary": "The viewer's list: open sessions and recently finished ones",
                "parameters": [_KEY_QUERY], "security": admin,
                "responses": {"200": _json("sessions", "ViewerSessions"), **_problems(403, m403=_M403_VIEWER)},
            }},
            "/ui/api/traces/{trace_id}": {"get": {
                "summary": "The spans of a recent or open trace, open spans drawn up to now",
                "parameters": [_TRACE_PATH, _KEY_QUERY], "security": admin,
                "responses": {"200": _json("the trace", "ViewerTrace"),
                              **_problems(403, 404, m403=_M403_VIEWER, m404="no recent or open trace with this id")},
            }},
            **_recording_paths(auth),
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": _json("ok", "Status")}}},
            "/readyz": {"get": {"summary": "Accepting traffic", "responses": {
                "200": _json("ready", "Status"), "503": _json("starting or draining", "Status")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "metrics"}}}},
        },
    }


_AUDIO_TYPES = ["audio/webm", "audio/ogg", "audio/mp4", "audio/wav"]


def _recording_paths(auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Call recordings (gateway/recordings, gateway/api/recordings.py)."""
    chunk = {"type": "object", "required": ["chunk"], "properties": {
        "chunk": _INT, "bytes": _INT, "next": _INT, "duplicate": {"type": "boolean"}}}
    binary = {"type": "string", "format": "binary"}
    return {
        "/v1/sessions/{session_id}/recording": {
            "post": {
                "summary": "Upload the next chunk of the call's stereo recording (user left, model right)",
                "parameters": [
                    _SESSION_PATH, _TOKEN_QUERY,
                    {"name": "chunk", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0},
                     "description": "the chunk's number, from 0; chunks are taken in order, a stored one is "
                                    "answered again without being read"},
                    {"name": "start", "in": "query", "required": False, "schema": {"type": "number"},
                     "description": "required on chunk 0: the browser's time recording began, ms since the epoch"},
                ],
                "security": auth,
                "requestBody": {"required": True, "content": {t: {"schema": binary} for t in _AUDIO_TYPES}},
                "responses": {
                    "201": {"description": "stored", "content": {"application/json": {"schema": chunk}}},
                    "200": {"description": "already stored (a retry)",
                            "content": {"application/json": {"schema": chunk}}},
                    **_problems(401, 403, 404, 409, 413, 415, 422, 503, m403=_M403_TOKEN + ", or no audio capture "
                                "for this session (operator or app did not opt in)",
                                m409="a chunk ahead of the next expected, another type than the recording's, or "
                                     "the session ended longer ago than the grace window",
                                m413="over the per-chunk, per-recording or duration limit",
                                m415="not an accepted audio type", m503="the recording store is unavailable"),
                },
            },
            "delete": {
                "summary": "Delete a session's recording (privacy requests)",
                "parameters": [_SESSION_PATH], "security": [{"adminKey": []}, {}],
                "responses": {"200": {"description": "deleted", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["session_id", "deleted_chunks"],
                    "properties": {"session_id": _STR, "deleted_chunks": _INT}}}}},
                    **_problems(403, 503, m403="needs the admin key (a loopback client while none is set)",
                                m503="the recording store is unavailable")},
            },
        },
        "/v1/recordings/{session_id}": {"get": {
            "summary": "Play a recording by the signed, expiring link on its trace (byte ranges supported)",
            "parameters": [
                _SESSION_PATH,
                {"name": "exp", "in": "query", "required": True, "schema": {"type": "string"},
                 "description": "expiry, s since the epoch"},
                {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"},
                 "description": "HMAC-SHA256 signature"},
            ],
            "responses": {
                "200": {"description": "the recording", "content": {t: {"schema": binary} for t in _AUDIO_TYPES}},
                "206": {"description": "a byte range of it", "content": {t: {"schema": binary} for t in _AUDIO_TYPES}},
                **_problems(403, 404, 416, 503, m403="a missing, expired or forged link",
                            m404="no recording for this session", m416="the range is outside the recording",
                            m503="the recording store is unavailable"),
            },
        }},
    }
