"""The providers' official SDKs, with the gateway's browser client and adapters attached as README.md shows,
talking to a local server that plays the conformance fixtures (tests/fixtures/providers): the trace that
reaches a real collector through a real gateway. The scenarios live in tests/js/sdk/scenarios.mjs."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from conftest import REPO
from otlp_sink import Collector, ReceivedSpan, Sink, children

FIXTURES = REPO / "tests" / "fixtures" / "providers"
RUNNER = REPO / "tests" / "js" / "sdk" / "run-scenario.mjs"
SDKS = REPO / "tests" / "js" / "node_modules"



def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def run_scenario(name: str, gateway_url: str) -> dict[str, Any]:
    assert shutil.which("node") and SDKS.is_dir(), "run bash scripts/setup.sh --with-test-system-packages"
    proc = subprocess.run(["node", str(RUNNER), name, gateway_url], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["problems"] == [], out["problems"]
    return out


def start_gateway(gateway_factory: Any, collector: Collector) -> Any:
    return gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "VTG_CAPTURE_CONTENT": "all",
    })


def trace_of(sink: Sink, out: dict[str, Any]) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    spans = sink.trace(out["trace_id"])
    root = next(s for s in spans if s.name == "voice_session")
    return root, spans


def named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name.split(" ")[0] == prefix), key=lambda s: s.start_ns)


def gemini_usages() -> list[dict[str, Any]]:
    return [m["usageMetadata"] for seq in fixture("gemini-live")["sequences"].values() for m in seq
            if "usageMetadata" in m]


def openai_usages(*sequences: str) -> list[dict[str, Any]]:
    seqs = fixture("openai-realtime")["sequences"]
    return [m["response"]["usage"] for name in sequences for m in seqs[name] if m["type"] == "response.done"]


def interruptions(root: ReceivedSpan) -> list[dict[str, Any]]:
    return [attrs for name, _, attrs in root.events if name == "voice.interruption"]


@pytest.mark.parametrize("scenario", ["geminiCallbacks", "geminiOnMessageClient"])
def test_gemini_live_sdk_session_reaches_the_collector_with_usage_tools_and_resumption(
    scenario: str, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    out = run_scenario(scenario, gw.url)
    assert out["capture"] == ["transcripts", "tool_arguments", "tool_results"] or out["capture"] is None
    root, spans = trace_of(sink, out)
    usages = gemini_usages()
    # Usage exactly as the server sent it, summed over the session.
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(u["promptTokenCount"] for u in usages)
    assert root.attributes["gen_ai.usage.output_tokens"] == sum(u["responseTokenCount"] for u in usages)
    assert root.attributes["gen_ai.usage.audio.input_tokens"] == sum(
        d["tokenCount"] for u in usages for d in u["promptTokensDetails"] if d["modality"] == "AUDIO")
    assert root.attributes["gen_ai.usage.cache_read.input_tokens"] == 128
    assert root.attributes["voice.session.end_reason"] == "completed"
    # Two connections; the second resumed with the newest handle the server gave.
    connections = named(spans, "voice.connection")
    assert len(connections) == 2
    assert any(name == "voice.connection.resumed" for name, _, _ in connections[1].events)
    assert connections[1].attributes["voice.connection.resumption_handle"] == "resume-handle-2"
    assert any(name == "voice.connection.go_away" for name, _, _ in connections[0].events)
    # The tool the app ran, and the one the model cancelled at the barge-in.
    tools = {s.attributes["gen_ai.tool.name"]: s for s in named(spans, "execute_tool")}
    assert set(tools) == {"get_weather", "lookup_landmark"}
    assert tools["get_weather"].attributes["gen_ai.tool.call.arguments"] == '{"city": "Paris"}' or json.loads(
        tools["get_weather"].attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    assert tools["lookup_landmark"].attributes["voice.tool.end_reason"] == "cancelled"
    # The barge-in: one interruption, with what was generated (1 s of audio) and what was played of it.
    [cut] = interruptions(root)
    assert cut["voice.interruption.generated_ms"] == 1000
    assert 0 <= cut["voice.interruption.played_ms"] <= 1000
    # Every inference span sits under a turn; the first turn's latency is measured from the client's VAD.
    turns = named(spans, "invoke_agent")
    for inference in named(spans, "realtime_inference"):
        assert inference.parent_span_id in {t.span_id for t in turns}
    assert turns[0].attributes["voice.latency.source"] == "client_vad"


def test_openai_realtime_ws_session_reaches_the_collector_as_three_turns(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    out = run_scenario("openaiRealtimeWS", gw.url)
    root, spans = trace_of(sink, out)
    turns = named(spans, "invoke_agent")
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "interrupted", "completed"]
    per_turn = [openai_usages("turn1_tool_call", "turn1_answer"), openai_usages("cancelled_answer_done"),
                openai_usages("turn3_answer")]
    for turn, usages in zip(turns, per_turn, strict=True):
        # One inference span per model response (the tool call's turn has two), each with the usage exactly as
        # its response.done sent it.
        inferences = sorted((c for c in children(spans, turn) if c.name.startswith("realtime_inference")),
                            key=lambda c: c.start_ns)
        assert len(inferences) == len(usages)
        for inference, usage in zip(inferences, usages, strict=True):
            assert inference.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
            assert inference.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
            # (a count of zero is left out)
            assert inference.attributes.get("gen_ai.usage.audio.output_tokens", 0) == (
                usage["output_token_details"]["audio_tokens"])
            assert inference.attributes.get("gen_ai.usage.cache_read.input_tokens", 0) == (
                usage["input_token_details"]["cached_tokens"])
        # The server's VAD said when the user stopped: that is the latency's source.
        assert turn.attributes["voice.latency.source"] == "provider_vad"
    [tool] = named(spans, "execute_tool")
    assert tool.parent_span_id == turns[0].span_id and tool.attributes["gen_ai.tool.name"] == "get_weather"
    asked, answered = sorted((c for c in children(spans, turns[0]) if c.name.startswith("realtime_inference")),
                             key=lambda c: c.start_ns)
    assert asked.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert asked.start_ns <= tool.start_ns and tool.end_ns <= answered.start_ns, "the answer came after the tool"
    [cut] = interruptions(root)
    assert (cut["voice.interruption.played_ms"], cut["voice.interruption.generated_ms"]) == (300, 1000)
    assert root.attributes["voice.session.interruption_count"] == 1
    assert root.attributes["voice.session.error_count"] == 1
    assert root.attributes["voice.session.connection_count"] == 1


def test_openai_agents_realtime_session_barge_in_after_generation_is_an_interruption(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    out = run_scenario("openaiAgentsSession", gw.url)
    root, spans = trace_of(sink, out)
    truncate = out["info"]["truncate"]
    [cut] = interruptions(root)
    assert cut["voice.interruption.played_ms"] == truncate["audio_end_ms"] < 20000
    assert cut["voice.interruption.generated_ms"] == 20000
    assert root.attributes["voice.session.interruption_count"] == 1
    usages = openai_usages("turn1_tool_call", "turn1_answer", "turn2_answer", "turn3_answer")
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(u["input_tokens"] for u in usages)
    assert root.attributes["gen_ai.usage.cache_read.input_tokens"] == sum(
        u["input_token_details"]["cached_tokens"] for u in usages)
    [tool] = named(spans, "execute_tool")
    assert tool.attributes["gen_ai.tool.name"] == "get_weather"
    assert named(spans, "invoke_agent")[0].attributes["voice.latency.source"] == "provider_vad"


@pytest.mark.parametrize("scenario", ["geminiCallbacks", "geminiOnMessageClient", "openaiAgentsSession",
                                      "openaiRealtimeWS"])
def test_each_sdk_session_is_three_turns_with_the_barge_in_on_the_turn_it_cut(
    scenario: str, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    out = run_scenario(scenario, gw.url)
    root, spans = trace_of(sink, out)
    turns = named(spans, "invoke_agent")
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "interrupted", "completed"]
    # One inference span per model response: OpenAI answers the tool call's turn with a second response.
    responses = [1, 1, 1] if scenario.startswith("gemini") else [2, 1, 1]
    assert [len([c for c in children(spans, turn) if c.name.startswith("realtime_inference")])
            for turn in turns] == responses
    [cut] = interruptions(root)
    assert cut["voice.turn.number"] == turns[1].attributes["voice.turn.number"]
    assert turns[1].attributes["voice.interruption.played_ms"] == cut["voice.interruption.played_ms"]
    source = "client_vad" if scenario.startswith("gemini") else "provider_vad"
    assert all(t.attributes["voice.latency.source"] == source for t in turns)
    assert root.attributes["voice.session.turn_count"] == 3
