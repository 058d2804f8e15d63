from __future__ import annotations

import time

import jwt
import pytest
from test_routes import auth, make_client, start

from gateway.errors import Forbidden, Unauthorized
from gateway.security import ApiKeys, ClientAddress, TokenSigner, cors_origin_regex


def test_token_from_a_rotated_out_key_still_verifies_and_new_tokens_use_the_new_key() -> None:
    old_key, new_key = "old-key-0123456789abcdef-0123456789", "new-key-0123456789abcdef-0123456789"
    token = TokenSigner(old_key, 60).issue("s1").token
    rotated = TokenSigner(new_key, 60, previous_keys=[old_key])
    rotated.verify(token, "s1")
    fresh = rotated.issue("s1").token
    assert jwt.get_unverified_header(fresh)["kid"] != jwt.get_unverified_header(token)["kid"]
    with pytest.raises(Unauthorized, match="does not hold"):
        TokenSigner(new_key, 60).verify(token, "s1")


def test_token_is_scoped_to_its_session_and_expires() -> None:
    signer = TokenSigner("k" * 32, 60)
    token = signer.issue("a").token
    with pytest.raises(Forbidden):
        signer.verify(token, "b")
    expired = signer.issue("a", now=time.time() - 3600).token
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(expired, "a")
    claims = {"sid": "a", "aud": "voice-trace-gateway/ingest", "exp": time.time() + 60}
    forged = jwt.encode(claims, "other-key-0123456789abcdef-01234567", algorithm="HS256",
                        headers={"kid": jwt.get_unverified_header(token)["kid"]})
    with pytest.raises(Unauthorized, match="invalid"):
        signer.verify(forged, "a")


def test_a_genuine_signature_over_an_altered_header_or_payload_is_refused() -> None:
    signer = TokenSigner("k" * 32, 60)
    token = signer.issue("a").token
    signer.verify(token, "a")  # known good, now cached
    header, payload, signature = token.split(".")
    other = jwt.encode({"sid": "b", "aud": "voice-trace-gateway/ingest", "exp": time.time() + 60}, "x" * 32,
                       algorithm="HS256").split(".")[1]
    altered_header = jwt.encode({"sid": "a"}, "x" * 32, algorithm="HS256", headers={"kid": "other"}).split(".")[0]
    for forged in (f"{header}.{other}.{signature}", f"{altered_header}.{payload}.{signature}"):
        for session in ("a", "b"):
            with pytest.raises(Unauthorized):
                signer.verify(forged, session)
    signer.verify(token, "a")  # the genuine token still works


def test_api_keys_accept_any_configured_key_and_nothing_else() -> None:
    keys = ApiKeys(["key-one", "key-two"])
    keys.check("key-two")
    for bad in (None, "", "key-on", "key-one "):
        with pytest.raises(Unauthorized):
            keys.check(bad)
    ApiKeys([]).check(None)


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    addresses = ClientAddress(["10.0.0.0/8"])
    assert addresses.resolve("10.1.2.3", "203.0.113.9, 10.9.9.9") == "203.0.113.9"
    assert addresses.resolve("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert ClientAddress([]).resolve("10.1.2.3", "203.0.113.9") == "10.1.2.3"


def test_cors_patterns_allow_exact_origins_and_wildcard_subdomains() -> None:
    import re

    regex = re.compile(cors_origin_regex(["https://app.example.com", "https://*.voice.dev"]) or "")
    assert regex.match("https://app.example.com")
    assert regex.match("https://a.b.voice.dev")
    assert not regex.match("https://voice.dev.evil.com")
    assert not regex.match("http://app.example.com")
    assert not regex.match("https://app.example.com.evil.com")
    assert cors_origin_regex([]) is None


def test_session_creation_behind_api_keys() -> None:
    with make_client(VTG_API_KEYS="backend-key-1,backend-key-2") as client:
        assert client.post("/v1/sessions", json={}).status_code == 401
        assert client.post("/v1/sessions", json={}, headers={"authorization": "Bearer nope"}).status_code == 401
        r = client.post("/v1/sessions", json={}, headers={"authorization": "Bearer backend-key-2"})
        assert r.status_code == 201
        # The browser then writes with the ingest token, not the API key.
        s = r.json()
        assert client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                           json={"type": "mark", "id": "1", "name": "x"}).status_code == 202


def test_unknown_origin_gets_no_cors_grant_and_allowed_one_does() -> None:
    with make_client(VTG_CORS_ORIGINS="https://*.example.com") as client:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
        ok = client.options("/v1/sessions", headers={"origin": "https://app.example.com", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
        denied = client.options("/v1/sessions", headers={"origin": "https://evil.test", **preflight})
        assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
        simple = client.post("/v1/sessions", json={}, headers={"origin": "https://evil.test"})
        assert "access-control-allow-origin" not in simple.headers
    with make_client() as client:
        r = client.post("/v1/sessions", json={}, headers={"origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in r.headers, "nothing is open by default"


def test_session_creation_flood_from_one_address_gets_429_with_retry_after() -> None:
    with make_client(VTG_SESSION_CREATE_RATE_PER_CLIENT="1") as client:
        # The bucket refills at 1/s: 40 requests find it empty however slowly a loaded machine sends them,
        # and the refusal itself is checked (a later request may find a refilled token).
        answers = [client.post("/v1/sessions", json={}) for _ in range(40)]
        assert [a.status_code for a in answers[:10]] == [201] * 10
        r = next(a for a in answers if a.status_code == 429)
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/problem+json"
        assert client.get("/healthz").status_code == 200


def test_full_process_answers_503_with_retry_after() -> None:
    with make_client(VTG_MAX_OPEN_SESSIONS="2") as client:
        a = start(client)
        start(client)
        r = client.post("/v1/sessions", json={})
        assert r.status_code == 503 and "retry-after" in r.headers
        client.post(f"/v1/sessions/{a['session_id']}/end", json={}, headers=auth(a))
        assert client.post("/v1/sessions", json={}).status_code == 201


def test_event_flood_on_one_session_gets_429_and_the_session_survives() -> None:
    # 0.5 events/s with a burst of 5: 80 posts outrun it however slowly a loaded machine sends them.
    with make_client(VTG_EVENT_RATE_PER_SESSION="0.5") as client:
        s = start(client)
        url = f"/v1/sessions/{s['session_id']}/events"
        answers = [client.post(url, headers=auth(s), json={"type": "mark", "id": str(i), "name": "x"})
                   for i in range(80)]
        assert answers[0].status_code == 202
        limited = next(a for a in answers if a.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        other = start(client)
        assert client.post(f"/v1/sessions/{other['session_id']}/events", headers=auth(other),
                           json={"type": "mark", "id": "1", "name": "x"}).status_code == 202
        assert "vtg_events_rejected_total{reason=\"rate-limited\"}" in client.get("/metrics").text


def test_too_many_events_in_one_request_is_413() -> None:
    with make_client(VTG_MAX_EVENTS_PER_REQUEST="3") as client:
        s = start(client)
        events = [{"type": "mark", "id": str(i), "name": "x"} for i in range(4)]
        r = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s), json={"events": events})
        assert r.status_code == 413 and "limit is 3" in r.json()["detail"]


def test_session_event_and_open_tool_limits_reject_per_event() -> None:
    with make_client(VTG_MAX_EVENTS_PER_SESSION="4", VTG_MAX_OPEN_TOOLS_PER_SESSION="2") as client:
        s = start(client)
        tools = [{"type": "tool.call", "id": f"t{i}", "call_id": f"c{i}", "name": "x"} for i in range(3)]
        body = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                           json={"events": tools}).json()
        assert body["accepted"] == 2 and body["rejected"][0]["index"] == 2
        assert "open tool calls" in body["rejected"][0]["errors"][0]["message"]
        more = [{"type": "mark", "id": f"m{i}", "name": "x"} for i in range(3)]
        body = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                           json={"events": more}).json()
        assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [2]
        # The limit refuses new events but the session still ends normally, with its spans.
        end = client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=auth(s))
        assert end.status_code == 200 and end.json()["tool_calls"] == 2


def test_tokens_in_use_are_answered_from_memory_with_their_scope_and_expiry_in_bounded_memory() -> None:
    signer = TokenSigner("k" * 32, 60)
    tokens = [signer.issue(f"s{i}").token for i in range(1500)]
    for _ in range(2):
        for i, token in enumerate(tokens):
            signer.verify(token, f"s{i}")
    assert len(signer._hot) <= 1024  # more sessions posting than it holds: it starts over, never grows
    for token in (tokens[-1], tokens[0]):
        signer.verify(token, "s1499" if token is tokens[-1] else "s0")
        with pytest.raises(Forbidden):
            signer.verify(token, "s7")
    expired = signer.issue("a", now=time.time() - 3600).token
    for _ in range(3):
        with pytest.raises(Unauthorized, match="expired"):
            signer.verify(expired, "a")
    replica = TokenSigner("k" * 32, 60)  # never issued it: verifies the signature once, then remembers
    for _ in range(2):
        replica.verify(tokens[5], "s5")
        with pytest.raises(Forbidden):
            replica.verify(tokens[5], "s6")
