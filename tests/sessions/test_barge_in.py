"""Barge-ins as the providers deliver them: Gemini's trailing turn_complete, and a cut during playback."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Recorder
from test_machine import Run

from gateway.sessions.machine import SessionMachine
from gateway.simulate import gemini_usage


def turns(recorder: Recorder) -> list[Any]:
    return sorted(recorder.named("invoke_agent"), key=lambda s: s.attributes["voice.turn.number"])


def inferences_per_turn(recorder: Recorder) -> list[int]:
    parents = [s.parent.span_id for s in recorder.named("realtime_inference")]
    return [parents.count(t.context.span_id) for t in turns(recorder)]


def end_reasons(recorder: Recorder) -> list[str]:
    return [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns(recorder)]


def answered_turn(r: Run, text: str = "ok") -> None:
    r.send("user.speech_start")
    r.send("user.speech_end", 800)
    r.send("model.response_start", 300)
    r.send("model.audio_start", 100)
    r.send("model.transcript", text=text)
    r.send("model.usage", usage=gemini_usage(10, 100, 200))
    r.send("model.turn_complete", 900)


@pytest.mark.parametrize("between", ["nothing", "speech", "transcript", "speech_and_transcript"])
def test_gemini_trailing_turn_complete_after_interrupted_closes_no_second_turn(
    machine: SessionMachine, recorder: Recorder, between: str
) -> None:
    """3-turn call, the second cut by a barge-in: Gemini sends interrupted, then turnComplete (with the
    interrupted generation's usage), whatever the user's speech and transcripts do around them."""
    r = Run(machine, recorder)
    answered_turn(r)
    r.send("user.transcript", 500, text="tell me a story")
    r.send("model.response_start", 300)
    r.send("model.audio_start", 100)
    r.send("model.transcript", text="Once upon")
    if between in ("speech", "speech_and_transcript"):
        r.send("user.speech_start", 2000)  # the barge-in, heard by the client VAD before Gemini reacts
    r.send("model.interrupted", 150, played_ms=1500, generated_ms=4000)
    if between in ("transcript", "speech_and_transcript"):
        r.send("user.transcript", 20, text="stop, ")
    r.send("model.transcript", 5, text=" a time")  # the cut generation's transcription trails its audio
    r.send("model.usage", 5, usage=gemini_usage(30, 250, 90))
    r.send("model.turn_complete", 5)
    if between == "nothing":
        r.send("user.speech_start", 300)
    r.send("user.speech_end", 700)
    speech_end = r.t
    r.send("user.transcript", 50, text="what time is it?")
    r.send("model.response_start", 400)
    r.send("model.audio_start", 200)
    audio_at = r.t
    r.send("model.usage", usage=gemini_usage(12, 95, 60))
    r.send("model.turn_complete", 900)
    r.end()

    assert end_reasons(recorder) == ["completed", "interrupted", "completed"]
    assert inferences_per_turn(recorder) == [1, 1, 1]
    third = turns(recorder)[2]
    assert third.attributes["voice.latency.source"] == "client_vad"
    assert third.attributes["voice.latency.user_to_first_audio_ms"] == (audio_at - speech_end) / 1e6 == 650
    second = turns(recorder)[1].context.span_id
    cut = next(s for s in recorder.named("realtime_inference") if s.parent.span_id == second)
    assert cut.attributes["gen_ai.usage.input_tokens"] == 280 and cut.attributes["gen_ai.usage.output_tokens"] == 90
    assert list(cut.attributes["gen_ai.response.finish_reasons"]) == ["interrupted"]
    assert '"content":"Once upon a time"' in str(cut.attributes["gen_ai.output.messages"])
    root = recorder.named("voice_session")[0]
    assert root.attributes["voice.session.turn_count"] == 3
    assert root.attributes["voice.session.interruption_count"] == 1
    assert root.attributes["gen_ai.usage.input_tokens"] == 110 + 280 + 107


def test_a_new_response_after_an_interruption_is_a_turn_of_its_own(machine: SessionMachine, recorder: Recorder) -> None:
    """OpenAI sends no trailing turn_complete: the next response's turn_complete closes the next turn."""
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.audio_start")
    r.send("user.speech_start", 500)
    r.send("model.usage", usage={"input_tokens": 5, "output_tokens": 7})
    r.send("model.interrupted", played_ms=400)
    r.send("user.speech_end", 600)
    r.send("model.response_start", 300)
    r.send("model.turn_complete", 900)
    r.send("model.response_start", 300)
    r.send("model.turn_complete", 900)
    r.end()
    assert end_reasons(recorder) == ["interrupted", "completed", "completed"]
    assert inferences_per_turn(recorder) == [1, 1, 1]


def test_an_interruption_reported_twice_counts_once(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.audio_start")
    r.send("model.interrupted", 500, generated_ms=3000)  # the provider's signal
    r.send("model.interrupted", 5, played_ms=480, generated_ms=2900)  # the player's stop
    r.send("model.turn_complete")
    r.end()
    turn = turns(recorder)[0]
    assert turn.attributes["voice.interruption.played_ms"] == 480
    assert turn.attributes["voice.interruption.generated_ms"] == 3000
    root = recorder.named("voice_session")[0]
    assert root.attributes["voice.session.interruption_count"] == 1
    assert root.attributes["voice.session.turn_count"] == 1


def test_an_interruption_before_any_model_output_leaves_the_users_turn_open(
    machine: SessionMachine, recorder: Recorder
) -> None:
    """Gemini may cut a generation whose first chunk never reached the client: its trailing turn_complete
    must not close the user's turn, whose answer comes next."""
    r = Run(machine, recorder)
    r.send("user.speech_start")
    r.send("user.speech_end", 500)
    r.send("user.speech_start", 300)
    r.send("model.interrupted")
    r.send("model.turn_complete")
    r.send("user.speech_end", 500)
    r.send("model.response_start", 300)
    r.send("model.turn_complete", 900)
    r.end()
    assert end_reasons(recorder) == ["completed"]
    assert inferences_per_turn(recorder) == [1]
    assert recorder.named("voice_session")[0].attributes["voice.session.interruption_count"] == 1


def openai_answer_then_barge_in_during_playback(r: Run) -> int:
    """response.done comes long before the user hears the end: the barge-in follows it."""
    r.send("user.speech_start", source="provider_vad")
    r.send("user.speech_end", 900, source="provider_vad")
    r.send("model.response_start", 200)
    r.send("model.audio_start", 150)
    r.send("model.playback_start", 40)
    r.send("model.usage", 300, usage={"input_tokens": 40, "output_tokens": 500})
    r.send("model.generation_complete")
    r.send("model.turn_complete")
    r.send("user.speech_start", 2500, source="provider_vad")  # the next turn's speech, which cuts the player
    r.send("model.interrupted", 150, played_ms=2650, generated_ms=9000)  # conversation.item.truncate
    return r.t


def test_barge_in_during_playback_after_generation_finished_interrupts_that_turn(
    machine: SessionMachine, recorder: Recorder
) -> None:
    r = Run(machine, recorder)
    cut_at = openai_answer_then_barge_in_during_playback(r)
    r.send("user.speech_end", 700, source="provider_vad")
    r.send("model.response_start", 300)
    r.send("model.audio_start", 100)
    r.send("model.turn_complete", 900)
    r.end()
    assert end_reasons(recorder) == ["interrupted", "completed"]
    assert inferences_per_turn(recorder) == [1, 1]
    first = turns(recorder)[0]
    assert first.end_time == cut_at
    assert first.attributes["voice.interruption.played_ms"] == 2650
    assert first.attributes["voice.interruption.generated_ms"] == 9000
    generation = next(s for s in recorder.named("realtime_inference") if s.parent.span_id == first.context.span_id)
    assert list(generation.attributes["gen_ai.response.finish_reasons"]) == ["stop"]  # it did finish generating
    assert generation.attributes["gen_ai.usage.output_tokens"] == 500
    root = recorder.named("voice_session")[0]
    assert root.attributes["voice.session.interruption_count"] == 1
    event = next(e for e in root.events if e.name == "voice.interruption")
    assert dict(event.attributes or {}) == {"voice.interruption.played_ms": 2650,
                                            "voice.interruption.generated_ms": 9000, "voice.turn.number": 1}
    second = turns(recorder)[1]
    assert second.attributes["voice.latency.source"] == "provider_vad"
    assert second.attributes["voice.latency.user_to_first_audio_ms"] == 400


def test_a_turn_whose_playback_ended_stays_completed(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.audio_start")
    r.send("model.playback_start")
    r.send("model.turn_complete")
    assert not recorder.named("invoke_agent"), "a turn still playing may yet be cut"
    r.send("model.playback_end", 3000)
    assert end_reasons(recorder) == ["completed"]
    r.send("user.speech_start", 500)
    r.send("model.interrupted", 100, played_ms=0)  # nothing was playing: no turn to cut
    r.send("user.speech_end", 500)
    r.send("model.response_start", 300)
    r.send("model.turn_complete", 900)
    r.end()
    assert end_reasons(recorder) == ["completed", "completed"]
    assert turns(recorder)[0].end_time < turns(recorder)[1].start_time


def test_a_turn_still_playing_is_completed_when_the_next_answer_begins_or_the_session_ends(
    machine: SessionMachine, recorder: Recorder
) -> None:
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.playback_start")
    r.send("model.turn_complete")
    completed_at = r.t
    r.send("user.transcript", 4000, text="and?")
    r.send("model.response_start", 300)
    assert end_reasons(recorder) == ["completed"] and turns(recorder)[0].end_time == completed_at
    r.send("model.playback_start")
    r.send("model.turn_complete")
    r.end()
    assert end_reasons(recorder) == ["completed", "completed"]
    assert len({s.context.span_id for s in recorder.spans()}) == len(recorder.spans())


def test_a_held_turn_survives_a_shared_store_round_trip(machine: SessionMachine, recorder: Recorder) -> None:
    """A replica that did not hold the turn finishes it: the held turn is plain state like the open one."""
    from gateway.sessions.codec import decode, encode

    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.playback_start")
    r.send("model.turn_complete")
    r.send("user.speech_start", 500)
    r.state = decode(encode(r.state))
    assert r.state.held is not None and r.state.held.awaiting == "playback"
    r.send("model.interrupted", played_ms=900)
    r.end()
    assert end_reasons(recorder) == ["interrupted", "session_closed"]


def test_a_playback_end_sent_after_turn_complete_but_timed_before_it_completes_the_turn_at_once(
    machine: SessionMachine, recorder: Recorder
) -> None:
    # What the Gemini adapter sends when its player played out before turn_complete arrived.
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.audio_start")
    r.send("model.playback_start")
    r.send("model.turn_complete", 400)
    completed_at = r.t
    r.send("model.playback_end", -50)
    assert end_reasons(recorder) == ["completed"]
    turn = turns(recorder)[0]
    assert turn.end_time == completed_at
    assert [e.timestamp for e in turn.events if e.name == "voice.playback_end"] == [completed_at - 50_000_000]
    r.send("user.speech_start", 500)
    r.send("model.interrupted", 100, played_ms=0)  # a later barge-in no longer cuts it
    r.end()
    assert end_reasons(recorder)[0] == "completed"
