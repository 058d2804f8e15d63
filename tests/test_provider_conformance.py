"""Provider conformance at the canonical-event level: the events the adapters send for the traffic each provider
documents, through the real gateway (HTTP API, service, state machine, emitter), and the trace that results.

Gemini Live (LiveServerMessage): setupComplete, serverContent with modelTurn audio/text parts, input and output
transcription, generationComplete, turnComplete, interrupted followed by turnComplete, toolCall,
toolCallCancellation, usageMetadata, goAway, sessionResumptionUpdate. OpenAI Realtime GA server events:
session.created, input_audio_buffer.speech_started/speech_stopped/committed, input audio transcription,
response.created/done with usage and token details, output audio and transcript deltas, function call
arguments done, conversation.item.truncated (after the app's conversation.item.truncate), error,
rate_limits.updated. Each step names the provider message it stands for; steps without an event (committed,
sessionResumptionUpdate, rate_limits.updated, item truncated) are listed as such. The raw messages and the
adapters that map them live with the browser client (tests/fixtures/providers, gateway/static/adapters).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_routes import auth, make_client, spans_of, start

Step = tuple[float, str, str | None, dict[str, Any]]  # (ms after the previous step, provider message, event, fields)

GEMINI_USAGE_1 = {"promptTokenCount": 334, "responseTokenCount": 420, "totalTokenCount": 754,
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 24},
                                          {"modality": "AUDIO", "tokenCount": 310}],
                  "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 420}]}
GEMINI_USAGE_2 = {"promptTokenCount": 512, "responseTokenCount": 96, "totalTokenCount": 608,
                  "cachedContentTokenCount": 256,
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 40},
                                          {"modality": "AUDIO", "tokenCount": 472}],
                  "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 96}]}
GEMINI_USAGE_3 = {"promptTokenCount": 610, "responseTokenCount": 60, "totalTokenCount": 670,
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 50},
                                          {"modality": "AUDIO", "tokenCount": 560}],
                  "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 60}]}

GEMINI: list[Step] = [
    (0, "WebSocket open", "connection.open", {"connection_id": "conn-1"}),
    (140, "setupComplete", "connection.setup_complete", {}),
    # Turn 1: a question that needs a tool.
    (900, "client VAD: speech start", "user.speech_start", {}),
    (700, "serverContent.inputTranscription", "user.transcript", {"text": "Weather in Paris?"}),
    (600, "client VAD: speech end", "user.speech_end", {}),
    (420, "toolCall (first content of the generation)", "model.response_start", {}),
    (0, "toolCall.functionCalls[0]", "tool.call", {"call_id": "fc-1", "name": "get_weather",
                                                    "arguments": {"city": "Paris"}}),
    (380, "sendToolResponse", "tool.result", {"call_id": "fc-1", "result": {"temp_c": 18}}),
    (260, "serverContent.modelTurn.parts[].inlineData audio/pcm;rate=24000", "model.audio_start", {}),
    (100, "player: first chunk sounds (predicted at receipt)", "model.playback_start", {}),
    (300, "serverContent.outputTranscription", "model.transcript", {"text": "It's 18 degrees in Paris."}),
    (900, "serverContent.generationComplete", "model.generation_complete", {}),
    (1800, "player drained", "model.playback_end", {}),
    (40, "usageMetadata (on the turnComplete message)", "model.usage", {"usage": GEMINI_USAGE_1}),
    (0, "serverContent.turnComplete", "model.turn_complete", {}),
    # Turn 2: a story the user cuts, while a tool call is pending.
    (1200, "client VAD: speech start", "user.speech_start", {}),
    (800, "serverContent.inputTranscription", "user.transcript", {"text": "Tell me a story."}),
    (300, "client VAD: speech end", "user.speech_end", {}),
    (450, "serverContent.modelTurn (first content)", "model.response_start", {}),
    (0, "serverContent.modelTurn audio", "model.audio_start", {}),
    (100, "player: first chunk sounds", "model.playback_start", {}),
    (200, "toolCall", "tool.call", {"call_id": "fc-2", "name": "find_story", "arguments": {"topic": "sea"}}),
    (400, "serverContent.outputTranscription", "model.transcript", {"text": "Once upon a time"}),
    (1500, "client VAD: the user barges in", "user.speech_start", {}),
    (250, "serverContent.interrupted", "model.interrupted", {"played_ms": 1750, "generated_ms": 5200}),
    (5, "toolCallCancellation", "tool.cancel", {"call_ids": ["fc-2"]}),
    (5, "serverContent.outputTranscription (trailing the cut audio)", "model.transcript", {"text": ", far away"}),
    (5, "usageMetadata (on the trailing turnComplete)", "model.usage", {"usage": GEMINI_USAGE_2}),
    (0, "serverContent.turnComplete (interrupted > turn_complete)", "model.turn_complete", {}),
    (500, "serverContent.inputTranscription", "user.transcript", {"text": "What time is it?"}),
    (400, "client VAD: speech end", "user.speech_end", {}),
    # The server warns, the client resumes on a new connection.
    (100, "goAway {timeLeft: '10s'}", "connection.go_away", {"time_left_ms": 10_000}),
    (50, "sessionResumptionUpdate {newHandle, resumable}", None, {}),
    (100, "WebSocket close", "connection.close", {"code": 1000, "reason": "go away"}),
    (60, "WebSocket open (resuming)", "connection.open", {"connection_id": "conn-2"}),
    (120, "setupComplete", "connection.setup_complete", {}),
    (0, "setupComplete of a resumed session", "connection.resumed", {"handle": "h-2"}),
    # Turn 3: the answer to the barge-in.
    (300, "serverContent.modelTurn (first content)", "model.response_start", {}),
    (0, "serverContent.modelTurn audio", "model.audio_start", {}),
    (100, "player: first chunk sounds", "model.playback_start", {}),
    (200, "serverContent.outputTranscription", "model.transcript", {"text": "It's noon."}),
    (600, "serverContent.generationComplete", "model.generation_complete", {}),
    (900, "player drained", "model.playback_end", {}),
    (20, "usageMetadata", "model.usage", {"usage": GEMINI_USAGE_3}),
    (0, "serverContent.turnComplete", "model.turn_complete", {}),
]

OPENAI_USAGE_1A = {"total_tokens": 260, "input_tokens": 200, "output_tokens": 60,
                   "input_token_details": {"text_tokens": 120, "audio_tokens": 80, "cached_tokens": 64,
                                           "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0}},
                   "output_token_details": {"text_tokens": 60, "audio_tokens": 0}}
OPENAI_USAGE_1B = {"total_tokens": 700, "input_tokens": 280, "output_tokens": 420,
                   "input_token_details": {"text_tokens": 190, "audio_tokens": 90, "cached_tokens": 192,
                                           "cached_tokens_details": {"text_tokens": 128, "audio_tokens": 64}},
                   "output_token_details": {"text_tokens": 90, "audio_tokens": 330}}
OPENAI_USAGE_2 = {"total_tokens": 540, "input_tokens": 400, "output_tokens": 140,
                  "input_token_details": {"text_tokens": 250, "audio_tokens": 150, "cached_tokens": 256,
                                          "cached_tokens_details": {"text_tokens": 192, "audio_tokens": 64}},
                  "output_token_details": {"text_tokens": 30, "audio_tokens": 110}}
OPENAI_USAGE_3 = {"total_tokens": 610, "input_tokens": 520, "output_tokens": 90,
                  "input_token_details": {"text_tokens": 300, "audio_tokens": 220, "cached_tokens": 384,
                                          "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 128}},
                  "output_token_details": {"text_tokens": 20, "audio_tokens": 70}}


def summed(*usages: dict[str, Any]) -> dict[str, Any]:
    """What the adapter reports when a turn took several responses (a tool round trip): their sum."""
    out: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            out[key] = summed(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out


PV = {"source": "provider_vad"}
OPENAI: list[Step] = [
    (0, "WebSocket open", "connection.open", {"connection_id": "conn-1"}),
    (90, "session.created", "connection.setup_complete", {}),
    (20, "rate_limits.updated", None, {}),
    # Turn 1: server VAD; a function call, its output, a second response that speaks.
    (800, "input_audio_buffer.speech_started", "user.speech_start", PV),
    (1100, "input_audio_buffer.speech_stopped", "user.speech_end", PV),
    (5, "input_audio_buffer.committed", None, {}),
    (300, "response.created", "model.response_start", {}),
    (150, "conversation.item.input_audio_transcription.completed", "user.transcript",
     {"text": "Book a table for two.", "final": True}),
    (200, "response.function_call_arguments.done", "tool.call",
     {"call_id": "call_1", "name": "book_table", "arguments": {"people": 2}}),
    (20, "response.done (usage; it asked for a tool: the turn goes on)", "model.usage", {"usage": OPENAI_USAGE_1A}),
    (0, "response.done", "model.generation_complete", {}),
    (600, "conversation.item.create function_call_output", "tool.result", {"call_id": "call_1", "result": "ok"}),
    (10, "response.created (second response of the turn)", "model.response_start", {}),
    (280, "response.output_audio.delta", "model.audio_start", {}),
    (120, "output_audio_buffer.started / player", "model.playback_start", {}),
    (400, "response.output_audio_transcript.delta (batched)", "model.transcript", {"text": "Done, a table for two"}),
    (900, "response.done status=completed (this response's usage)", "model.usage", {"usage": OPENAI_USAGE_1B}),
    (0, "response.done", "model.generation_complete", {}),
    (0, "response.done status=completed", "model.turn_complete", {}),
    # The user cuts the answer while it still plays, after response.done: the app truncates the item.
    (2600, "input_audio_buffer.speech_started", "user.speech_start", PV),
    (60, "conversation.item.truncate {audio_end_ms: 3020} sent by the app", "model.interrupted",
     {"played_ms": 3020, "generated_ms": 7400}),
    (40, "conversation.item.truncated", None, {}),
    (900, "input_audio_buffer.speech_stopped", "user.speech_end", PV),
    (300, "response.created", "model.response_start", {}),
    (100, "conversation.item.input_audio_transcription.completed", "user.transcript",
     {"text": "Actually, make it three.", "final": True}),
    (180, "response.output_audio.delta", "model.audio_start", {}),
    (120, "output_audio_buffer.started / player", "model.playback_start", {}),
    (300, "response.output_audio_transcript.delta", "model.transcript", {"text": "Sure, three"}),
    # ...and cuts this one while it is still being generated: the server cancels the response.
    (500, "input_audio_buffer.speech_started", "user.speech_start", PV),
    (200, "response.done status=cancelled (usage)", "model.usage", {"usage": OPENAI_USAGE_2}),
    (0, "response.done", "model.generation_complete", {}),
    (0, "response.done status=cancelled", "model.interrupted", {"played_ms": 680, "generated_ms": 2100}),
    (700, "input_audio_buffer.speech_stopped", "user.speech_end", PV),
    (300, "response.created", "model.response_start", {}),
    (250, "response.output_audio.delta", "model.audio_start", {}),
    (300, "response.output_audio_transcript.delta", "model.transcript", {"text": "Three it is."}),
    (700, "response.done status=completed", "model.usage", {"usage": OPENAI_USAGE_3}),
    (0, "response.done", "model.generation_complete", {}),
    (0, "response.done status=completed", "model.turn_complete", {}),
    (200, "error {type: invalid_request_error}", "error",
     {"error_type": "invalid_request_error", "message": "Item not found"}),
    (100, "rate_limits.updated", None, {}),
    (300, "WebSocket close", "connection.close", {"code": 1000}),
]


def timeline(steps: list[Step], start_ms: int) -> list[dict[str, Any]]:
    """The events with ids, seq and client times (ms) as an adapter stamps them."""
    events, t = [], start_ms
    for n, (gap, _message, kind, fields) in enumerate(steps):
        t += gap
        if kind is not None:
            events.append({"type": kind, "id": f"ev-{n}", "seq": n, "ts": t, **fields})
    return events


def batches(events: list[dict[str, Any]], how: str) -> Iterator[list[dict[str, Any]]]:
    if how == "one_per_message":
        yield from ([e] for e in events)
    elif how == "reversed_batches_of_7_with_seq":  # the gateway orders a batch by seq
        for i in range(0, len(events), 7):
            yield list(reversed(events[i:i + 7]))
    else:  # "replayed": every batch of 5 twice, as a client retrying a lost answer does
        for i in range(0, len(events), 5):
            yield events[i:i + 5]
            yield events[i:i + 5]


def play(steps: list[Step], how: str, **body: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with make_client(VTG_CAPTURE_CONTENT="all") as client:
        s = start(client, **body)
        duration = int(sum(step[0] for step in steps))
        events = timeline(steps, int(time.time() * 1000) - duration - 1000)
        accepted = duplicates = 0
        for batch in batches(events, how):
            r = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                            json={"events": batch, "sent_at": time.time() * 1000})
            assert r.status_code == 202 and not r.json()["rejected"], r.text
            accepted, duplicates = accepted + r.json()["accepted"], duplicates + r.json()["duplicates"]
        assert accepted == len(events) and duplicates == (len(events) if how == "replayed" else 0)
        summary = client.post(f"/v1/sessions/{s['session_id']}/end", headers=auth(s),
                              json={"reason": "user_disconnect"}).json()
        return spans_of(client, s["trace_id"]), summary


class Trace:
    def __init__(self, spans: list[dict[str, Any]]) -> None:
        self.spans = spans
        ids = [x["span_id"] for x in spans]
        assert len(ids) == len(set(ids)), "a span was exported twice"
        [self.root] = self.named("voice_session")
        self.turns = sorted(self.named("invoke_agent"), key=lambda x: x["attributes"]["voice.turn.number"])

    def named(self, name: str) -> list[dict[str, Any]]:
        return [x for x in self.spans if x["name"].split(" ")[0] == name]

    def children(self, parent: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [x for x in self.named(name) if x["parent_span_id"] == parent["span_id"]]

    def end_reasons(self) -> list[str]:
        return [t["attributes"]["gen_ai.agent.invocation.end_reason"] for t in self.turns]

    def generation(self, turn: int) -> dict[str, Any]:
        [span] = self.children(self.turns[turn], "realtime_inference")
        return span
# What an adapter that starts one response per turn (and sums usage over the turn) sends: today's trace.
OPENAI_ONE_RESPONSE_START_PER_TURN: list[Step] = [
    (ms, what, None if what.startswith("response.created (second") else kind,
     {"usage": summed(OPENAI_USAGE_1A, OPENAI_USAGE_1B)} if body.get("usage") is OPENAI_USAGE_1B else body)
    for ms, what, kind, body in OPENAI
]


def usage_attributes(span: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in span["attributes"].items() if k.startswith("gen_ai.usage.")}


HOW = ["one_per_message", "reversed_batches_of_7_with_seq", "replayed"]


@pytest.mark.parametrize("how", HOW)
def test_gemini_live_call_with_tool_barge_in_and_resumption(how: str) -> None:
    spans, summary = play(GEMINI, how, provider="gcp.gemini", model="gemini-live-2.5-flash-native-audio")
    tr = Trace(spans)
    assert tr.end_reasons() == ["completed", "interrupted", "completed"]
    assert [len(tr.children(t, "realtime_inference")) for t in tr.turns] == [1, 1, 1]
    assert summary["turns"] == 3 and summary["interruptions"] == 1 and summary["tool_calls"] == 2

    # Usage exactly as sent, per turn, and summed on the root.
    assert usage_attributes(tr.generation(0)) == {
        "gen_ai.usage.input_tokens": 334, "gen_ai.usage.output_tokens": 420, "gen_ai.usage.text.input_tokens": 24,
        "gen_ai.usage.audio.input_tokens": 310, "gen_ai.usage.audio.output_tokens": 420}
    assert usage_attributes(tr.generation(1)) == {
        "gen_ai.usage.input_tokens": 512, "gen_ai.usage.output_tokens": 96, "gen_ai.usage.text.input_tokens": 40,
        "gen_ai.usage.audio.input_tokens": 472, "gen_ai.usage.audio.output_tokens": 96,
        "gen_ai.usage.cache_read.input_tokens": 256}
    assert tr.generation(2)["attributes"]["gen_ai.usage.input_tokens"] == 610
    assert tr.root["attributes"]["gen_ai.usage.input_tokens"] == 334 + 512 + 610
    assert tr.root["attributes"]["gen_ai.usage.output_tokens"] == 420 + 96 + 60

    # Tools: the first completed under turn 1, the second cancelled by the barge-in under turn 2.
    tools = {x["attributes"]["gen_ai.tool.call.id"]: x for x in tr.named("execute_tool")}
    assert tools["fc-1"]["parent_span_id"] == tr.turns[0]["span_id"]
    assert tools["fc-1"]["attributes"]["voice.tool.end_reason"] == "completed"
    assert tools["fc-1"]["end_time_unix_nano"] - tools["fc-1"]["start_time_unix_nano"] == pytest.approx(380e6, abs=1e4)
    assert tools["fc-2"]["parent_span_id"] == tr.turns[1]["span_id"]
    assert tools["fc-2"]["attributes"]["voice.tool.end_reason"] == "cancelled"

    # The interruption: on the cut turn and on the root, with what was played and generated.
    cut = tr.turns[1]["attributes"]
    assert (cut["voice.interruption.played_ms"], cut["voice.interruption.generated_ms"]) == (1750, 5200)
    [event] = [e for e in tr.root["events"] if e["name"] == "voice.interruption"]
    assert event["attributes"] == {"voice.interruption.played_ms": 1750, "voice.interruption.generated_ms": 5200,
                                   "voice.turn.number": 2}
    assert tr.generation(1)["attributes"]["gen_ai.response.finish_reasons"] == ["interrupted"]
    assert "Once upon a time, far away" in tr.generation(1)["attributes"]["gen_ai.output.messages"]

    # Latency from the client VAD's speech end; the third turn's from the barge-in speech's end.
    first, third = tr.turns[0]["attributes"], tr.turns[2]["attributes"]
    assert first["voice.latency.source"] == third["voice.latency.source"] == "client_vad"
    assert first["voice.latency.user_to_first_audio_ms"] == pytest.approx(420 + 380 + 260, abs=0.01)
    assert first["voice.latency.user_to_first_playback_ms"] == pytest.approx(420 + 380 + 260 + 100, abs=0.01)
    assert third["voice.latency.user_to_first_audio_ms"] == pytest.approx(100 + 50 + 100 + 60 + 120 + 300, abs=0.01)

    # Connections: two, the first warned by goAway, the second resumed.
    conns = sorted(tr.named("voice.connection"), key=lambda x: x["start_time_unix_nano"])
    assert [c["attributes"]["voice.connection.id"] for c in conns] == ["conn-1", "conn-2"]
    assert [e["name"] for e in conns[0]["events"]] == ["voice.connection.setup_complete", "voice.connection.go_away"]
    assert conns[1]["attributes"]["voice.connection.resumption_handle"] == "h-2"
    assert tr.root["attributes"]["voice.session.connection_count"] == 2
    assert all(x["start_time_unix_nano"] >= tr.root["start_time_unix_nano"] for x in spans)


@pytest.mark.parametrize("how", HOW)
def test_openai_realtime_call_with_tool_round_trip_and_two_kinds_of_barge_in(how: str) -> None:
    spans, summary = play(OPENAI, how, provider="openai", model="gpt-realtime")
    tr = Trace(spans)
    # Cut while playing (after response.done), cut while generating, completed.
    assert tr.end_reasons() == ["interrupted", "interrupted", "completed"]
    # One inference span per model response: the tool round trip's turn has two, each with its own usage.
    assert [len(tr.children(t, "realtime_inference")) for t in tr.turns] == [2, 1, 1]
    assert summary["turns"] == 3 and summary["interruptions"] == 2 and summary["errors"] == 1

    asked, answered = sorted(tr.children(tr.turns[0], "realtime_inference"), key=lambda x: x["start_time_unix_nano"])
    assert asked["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert asked["attributes"]["gen_ai.usage.input_tokens"] == OPENAI_USAGE_1A["input_tokens"]
    assert asked["attributes"]["gen_ai.usage.output_tokens"] == OPENAI_USAGE_1A["output_tokens"]
    assert asked["end_time_unix_nano"] - asked["start_time_unix_nano"] == pytest.approx(370e6, abs=1e4)
    assert answered["attributes"]["gen_ai.usage.input_tokens"] == OPENAI_USAGE_1B["input_tokens"]
    assert answered["attributes"]["gen_ai.usage.audio.output_tokens"] == (
        OPENAI_USAGE_1B["output_token_details"]["audio_tokens"])
    assert answered["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    [tool] = tr.named("execute_tool")
    assert asked["end_time_unix_nano"] - tool["start_time_unix_nano"] == pytest.approx(20e6, abs=1e4)
    assert tool["end_time_unix_nano"] <= answered["start_time_unix_nano"]
    assert tr.root["attributes"]["gen_ai.usage.input_tokens"] == 480 + 400 + 520

    # Each response is priced from its own usage; the session's cost is the sum over every response.
    assert asked["attributes"]["voice.cost.estimated"] is False and answered["attributes"]["voice.cost.total_usd"] > 0
    assert tr.root["attributes"]["voice.cost.total_usd"] == pytest.approx(
        sum(x["attributes"]["voice.cost.total_usd"] for x in tr.named("realtime_inference")))

    # The two responses together: what one summed report said before.
    both = summed(usage_attributes(asked), usage_attributes(answered))
    assert both == {
        "gen_ai.usage.input_tokens": 480, "gen_ai.usage.output_tokens": 480, "gen_ai.usage.text.input_tokens": 310,
        "gen_ai.usage.audio.input_tokens": 170, "gen_ai.usage.text.output_tokens": 150,
        "gen_ai.usage.audio.output_tokens": 330, "gen_ai.usage.cache_read.input_tokens": 256}
    first = answered["attributes"]
    assert first["gen_ai.response.finish_reasons"] == ["stop"], "the generation finished; the playback was cut"
    assert tr.generation(1)["attributes"]["gen_ai.usage.input_tokens"] == 400
    assert tr.generation(1)["attributes"]["gen_ai.response.finish_reasons"] == ["interrupted"]
    assert tr.generation(2)["attributes"]["gen_ai.usage.output_tokens"] == 90
    assert tr.root["attributes"]["gen_ai.usage.input_tokens"] == 480 + 400 + 520

    played = tr.turns[0]["attributes"]
    assert (played["voice.interruption.played_ms"], played["voice.interruption.generated_ms"]) == (3020, 7400)
    assert played["voice.latency.user_to_first_audio_ms"] == pytest.approx(5 + 300 + 150 + 200 + 20 + 600 + 10 + 280,
                                                                             abs=0.01)


def test_an_adapter_starting_one_response_per_turn_still_gets_one_inference_span_per_turn() -> None:
    spans, summary = play(OPENAI_ONE_RESPONSE_START_PER_TURN, "one_per_message", provider="openai",
                          model="gpt-realtime")
    tr = Trace(spans)
    assert tr.end_reasons() == ["interrupted", "interrupted", "completed"]
    assert [len(tr.children(t, "realtime_inference")) for t in tr.turns] == [1, 1, 1]
    assert summary["turns"] == 3 and summary["interruptions"] == 2 and summary["errors"] == 1

    first = tr.generation(0)["attributes"]
    assert usage_attributes(tr.generation(0)) == {
        "gen_ai.usage.input_tokens": 480, "gen_ai.usage.output_tokens": 480, "gen_ai.usage.text.input_tokens": 310,
        "gen_ai.usage.audio.input_tokens": 170, "gen_ai.usage.text.output_tokens": 150,
        "gen_ai.usage.audio.output_tokens": 330, "gen_ai.usage.cache_read.input_tokens": 256}
    assert first["gen_ai.response.finish_reasons"] == ["stop"], "the generation finished; the playback was cut"
    assert tr.generation(1)["attributes"]["gen_ai.usage.input_tokens"] == 400
    assert tr.generation(1)["attributes"]["gen_ai.response.finish_reasons"] == ["interrupted"]
    assert tr.generation(2)["attributes"]["gen_ai.usage.output_tokens"] == 90
    assert tr.root["attributes"]["gen_ai.usage.input_tokens"] == 480 + 400 + 520

    [tool] = tr.named("execute_tool")
    assert tool["parent_span_id"] == tr.turns[0]["span_id"]
    assert tool["attributes"]["gen_ai.tool.call.arguments"] == '{"people":2}'

    played = tr.turns[0]["attributes"]
    assert (played["voice.interruption.played_ms"], played["voice.interruption.generated_ms"]) == (3020, 7400)
    generating = tr.turns[1]["attributes"]
    assert (generating["voice.interruption.played_ms"], generating["voice.interruption.generated_ms"]) == (680, 2100)
    events = [e["attributes"] for e in tr.root["events"] if e["name"] == "voice.interruption"]
    assert [e["voice.turn.number"] for e in events] == [1, 2]
    assert [e["name"] for e in tr.root["events"] if e["name"] == "exception"] == ["exception"]

    # Server VAD is the provider's: every measured latency says so.
    for turn in tr.turns:
        assert turn["attributes"]["voice.latency.source"] == "provider_vad"
    assert played["voice.latency.user_to_first_audio_ms"] == pytest.approx(5 + 300 + 150 + 200 + 20 + 600 + 10 + 280,
                                                                             abs=0.01)
    assert tr.turns[2]["attributes"]["voice.latency.user_to_first_audio_ms"] == pytest.approx(550, abs=0.01)
    assert {x["attributes"]["voice.speech.source"] for x in tr.named("user_speech")} == {"provider_vad"}
