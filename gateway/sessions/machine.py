"""The session state machine: validated events in, finished spans out.

The gateway, not the browser, segments turns (DESIGN §4). A turn opens at the
first of user.speech_start, user.transcript, model.response_start or tool.call
when none is open, and closes at model.turn_complete, model.interrupted or the
session's end. Speech that starts while the model is still answering is a
barge-in: it opens the *next* turn, so it is held aside until the current
turn closes. A turn that ended may still hold its spans a little (``state.held``):
an interrupted generation until the provider's trailing turn_complete (Gemini),
a completed turn until its audio stops playing, since a barge-in may yet cut it.

Every span that opens ends exactly once; functions here only return spans
that just ended, so replaying an event (deduplicated upstream by id) or ending
twice never produces a span twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import events as ev
from gateway import semconv as sc
from gateway.analytics.pricing import Pricer
from gateway.analytics.usage import Usage, normalize_usage
from gateway.sessions.clock import settle
from gateway.sessions.connections import connection_close, connection_event, connection_open, finish_connection
from gateway.sessions.content import Content, to_json
from gateway.sessions.costs import reprice_last_turn, turn_cost
from gateway.sessions.records import (
    add_event,
    child,
    finish,
    get_attr,
    inference_attributes,
    model_attributes,
    named,
    open_span,
    root_event,
    session_attributes,
    set_attr,
    set_attrs,
    set_default_attr,
    update_attrs,
)
from gateway.sessions.responses import settle_response, turn_usage
from gateway.sessions.root import root_span
from gateway.sessions.state import (
    AWAIT_PLAYBACK,
    AWAIT_TURN_COMPLETE,
    NO_TOOLS,
    Attrs,
    FinishedSpan,
    OpenSpan,
    PendingSpeech,
    SessionState,
    SpanEvent,
    TurnState,
    new_trace_id,
    shared_tags,
)
from gateway.sessions.summary import summarize

CLIENT_VAD = "client_vad"


@dataclass(frozen=True, slots=True)
class MachineOptions:
    transcripts: bool = False
    tool_arguments: bool = False
    tool_results: bool = False
    redactor: Callable[[str], str] | None = None
    max_attribute_length: int = 8192
    # Each turn its own trace, linked to the session root, for backends that cap a trace's size or age.
    per_turn_traces: bool = False
    pricer: Pricer | None = None

    @classmethod
    def capture_all(cls, **kwargs: Any) -> MachineOptions:
        return cls(transcripts=True, tool_arguments=True, tool_results=True, **kwargs)


class SessionMachine:
    def __init__(self, options: MachineOptions) -> None:
        self.options = options
        self.content = Content(options.transcripts, options.redactor, options.max_attribute_length)
        self._handlers: dict[str, Callable[[SessionState, Any, int, list[FinishedSpan]], None]] = {
            "connection.open": lambda state, e, t, out: connection_open(state, e.connection_id, t, out),
            "connection.setup_complete": connection_event,
            "connection.go_away": connection_event,
            "connection.resumed": connection_event,
            "connection.close": lambda state, e, t, out: connection_close(self.content, state, e, t, out),
            "user.speech_start": self._speech_start,
            "user.speech_end": self._speech_end,
            "user.transcript": self._user_transcript,
            "model.response_start": self._response_start,
            "model.audio_start": self._audio_start,
            "model.playback_start": self._playback_start,
            "model.playback_end": self._playback_end,
            "model.transcript": self._model_transcript,
            "model.generation_complete": self._generation_complete,
            "model.turn_complete": self._turn_complete,
            "model.interrupted": self._interrupted,
            "model.usage": self._usage,
            "tool.call": self._tool_call,
            "tool.result": self._tool_result,
            "tool.cancel": self._tool_cancel,
            "error": self._error,
            "session.update": self._session_update,
            "mark": self._mark,
        }

    # -- public -------------------------------------------------------------------------------------

    def apply(self, state: SessionState, event: ev.Event, t: int, received_ns: int | None = None) -> list[FinishedSpan]:
        """Apply one event at its session time ``t`` (``gateway.sessions.clock``), received at ``received_ns``."""
        out: list[FinishedSpan] = []
        self.apply_into(state, event, t, received_ns, out)
        return out

    def apply_into(self, state: SessionState, event: ev.Event, t: int, received_ns: int | None,
                   out: list[FinishedSpan]) -> None:
        """``apply``, adding the spans that ended to ``out``."""
        settle(state, t, received_ns)
        self._handlers[event.type](state, event, t, out)

    def end(self, state: SessionState, reason: str, t: int, **root_attrs: Any) -> list[FinishedSpan]:
        """End the session and everything still open in it; the root span is the last one returned."""
        out: list[FinishedSpan] = []
        t = max(t, state.last_event_ns)
        self._release(state, out)
        if state.pending_speech is not None and state.turn is None:
            self._open_turn(state, state.pending_speech.start_ns, out)
        if state.turn is not None:
            self._close_turn(state, t, sc.END_SESSION_CLOSED, out)
        if state.pending_speech is not None:  # a barge-in the session ended before its turn could open
            self._open_turn(state, state.pending_speech.start_ns, out)
            self._close_turn(state, t, sc.END_SESSION_CLOSED, out)
        for call_id in list(state.tools):
            tool = state.tools.pop(call_id)
            out.append(finish(state, tool, t, last={sc.VOICE_TOOL_END_REASON: sc.END_SESSION_CLOSED}))
        if state.connection is not None:
            out.append(finish_connection(state, state.connection, t,
                                         {sc.VOICE_CONNECTION_END_REASON: sc.END_SESSION_CLOSED}))
            state.connection = None
        state.ended, state.end_reason, state.end_ns = True, reason, t
        attrs = model_attributes(state, session_attributes(state))
        if self.options.transcripts and state.transcript:
            attrs[sc.VOICE_SESSION_TRANSCRIPT] = self.content.transcript(state.transcript)
        attrs.update(root_attrs)
        out.append(root_span(state, t, reason, attrs))
        state.summary = summarize(state)
        return out

    # -- turns --------------------------------------------------------------------------------------

    def _open_turn(self, state: SessionState, t: int, out: list[FinishedSpan]) -> TurnState:
        """A new turn; callers use the open one when there is one (``state.turn or self._open_turn(...)``: a
        TurnState is always true)."""
        state.turn_count += 1
        # Its operation name and number are added when it finishes (_finish_turn).
        gap = state.last_turn_end_ns
        attrs = () if gap is None else (sc.VOICE_TURN_GAP_MS, max(0, t - gap) / 1e6)
        span = open_span(named(sc.SPAN_TURN, state.agent), state.trace.root_span_id, t, attrs)
        if self.options.per_turn_traces:
            span.parent, span.trace_id = None, new_trace_id()
            span.links = ((state.trace.trace_id, state.trace.root_span_id),)
        turn = TurnState(state.turn_count, span)
        state.turn = turn
        pending, state.pending_speech = state.pending_speech, None
        if pending is not None:
            speech = child(span, sc.SPAN_USER_SPEECH, pending.start_ns, (sc.VOICE_SPEECH_SOURCE, pending.source))
            turn.user_text = pending.text
            if pending.end_ns is not None:
                turn.speech_end_ns = pending.end_ns
                turn.user_audio_ms += (pending.end_ns - pending.start_ns) / 1e6
                turn.speech_end_source = pending.source
                out.append(finish(state, speech, pending.end_ns))
            else:
                turn.speech = speech
        return turn

    def _inference(self, state: SessionState, t: int, out: list[FinishedSpan]) -> OpenSpan:
        turn = state.turn or self._open_turn(state, t, out)
        if turn.inference is None:
            # A new generation: the previous turn cannot be waiting for anything any more.
            self._release(state, out)
            state.expect_trailing_turn_complete = False
            # Its model and operation name are added when it finishes (_finish_inference).
            turn.inference = child(turn.span, named(sc.SPAN_INFERENCE, state.model), t, kind="client")
        return turn.inference

    def _generating(self, state: SessionState) -> bool:
        return state.turn is not None and state.turn.inference is not None

    def _awaiting_turn_complete(self, state: SessionState) -> TurnState | None:
        """The interrupted turn, while what the provider still sends of its generation belongs to it."""
        held = state.held
        if held is not None and held.awaiting == AWAIT_TURN_COMPLETE and not self._generating(state):
            return held
        return None

    def _close_turn(
        self, state: SessionState, t: int, reason: str, out: list[FinishedSpan], hold: str | None = None
    ) -> None:
        """End the open turn at ``t``. With ``hold`` its spans wait (as ``state.held``) for what may still
        change them: the trailing turn_complete of an interrupted generation (its usage and transcript), or
        the end of playback (a barge-in during playback makes it interrupted)."""
        turn = state.turn
        assert turn is not None
        state.turn = None
        state.last_turn_end_ns = t
        turn.end_ns, turn.end_reason = t, reason
        if turn.speech is not None:
            out.append(finish(state, turn.speech, t))
            turn.speech = None
        self._release(state, out)  # an older held turn goes first
        if hold != AWAIT_TURN_COMPLETE:
            self._finish_generation(state, turn, out)
        if hold is None:
            self._finish_turn(state, turn, out)
        else:
            turn.awaiting = hold
            state.held = turn

    def _release(self, state: SessionState, out: list[FinishedSpan]) -> None:
        turn, state.held = state.held, None
        if turn is None:
            return
        if turn.awaiting == AWAIT_TURN_COMPLETE:
            self._finish_generation(state, turn, out)
        turn.awaiting = None
        self._finish_turn(state, turn, out)

    def _finish_generation(self, state: SessionState, turn: TurnState, out: list[FinishedSpan]) -> None:
        """The inference span and the turn's usage and cost."""
        assert turn.end_ns is not None and turn.end_reason is not None
        t, reason = turn.end_ns, turn.end_reason
        capture = self.options.transcripts
        state.last_turn_usage = state.last_turn_cost = None
        if turn.inference is not None:
            inf = turn.inference
            last: Attrs = {}
            if reason != sc.END_SESSION_CLOSED:
                last[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [
                    reason if reason == sc.END_INTERRUPTED else turn.finish_reason
                ]
            if turn.usage is not None:
                last.update(turn.usage.span_attributes())
                last[sc.VOICE_USAGE_REPORTS] = turn.usage_reports
            cost = turn_cost(self.options.pricer, state, turn, t)
            if cost is not None:
                last.update(cost.span_attributes())
                state.cost_total = cost if state.cost_total is None else state.cost_total + cost
                state.last_turn_cost = cost
            if capture and turn.user_text:
                last[sc.GEN_AI_INPUT_MESSAGES] = self.content.messages("user", turn.user_text)
            if capture and turn.model_text:
                last[sc.GEN_AI_OUTPUT_MESSAGES] = self.content.messages("assistant", turn.model_text)
            out.append(self._finish_inference(state, inf, t, last))
        total = turn_usage(turn)
        if total is not None:
            state.usage_total = state.usage_total + total
            # A late report corrects the turn's last response only.
            state.last_turn_usage = turn.usage if turn.usage is not None else Usage()

    def _finish_turn(self, state: SessionState, turn: TurnState, out: list[FinishedSpan]) -> None:
        assert turn.end_ns is not None and turn.end_reason is not None
        capture = self.options.transcripts
        span = turn.span
        last: Attrs = {sc.GEN_AI_AGENT_INVOCATION_END_REASON: turn.end_reason}
        if capture and turn.user_text:
            last[sc.GEN_AI_INPUT_MESSAGES] = self.content.messages("user", turn.user_text)
            user_line = self.content.redact("".join(turn.user_text))
            state.transcript = (*state.transcript, {"turn": turn.number, "role": "user", "text": user_line})
        if capture and turn.model_text:
            last[sc.GEN_AI_OUTPUT_MESSAGES] = self.content.messages("assistant", turn.model_text)
            model_line = self.content.redact("".join(turn.model_text))
            state.transcript = (*state.transcript, {"turn": turn.number, "role": "assistant", "text": model_line})
        implied: Attrs = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT, sc.VOICE_TURN_NUMBER: turn.number}
        out.append(finish(state, span, turn.end_ns, implied=implied, last=last))

    def _finish_inference(self, state: SessionState, inference: OpenSpan, t: int, last: Attrs) -> FinishedSpan:
        return finish(state, inference, t, implied=inference_attributes(state, {}), last=last)

    # -- user -----------------------------------------------------------------------------------------

    def _barging_in(self, state: SessionState) -> bool:
        return state.turn is not None and state.turn.inference is not None

    def _speech_start(self, state: SessionState, e: ev.UserSpeechStart, t: int, out: list[FinishedSpan]) -> None:
        source = e.source or CLIENT_VAD
        if self._barging_in(state):
            if state.pending_speech is None:
                state.pending_speech = PendingSpeech(t, source=source)
            return
        turn = state.turn or self._open_turn(state, t, out)
        if turn.speech is None:
            turn.speech = child(turn.span, sc.SPAN_USER_SPEECH, t, (sc.VOICE_SPEECH_SOURCE, source))

    def _speech_end(self, state: SessionState, e: ev.UserSpeechEnd, t: int, out: list[FinishedSpan]) -> None:
        # Without a source of its own, the end was detected by whatever detected the start.
        if state.pending_speech is not None:
            state.pending_speech.end_ns = t
            state.pending_speech.source = e.source or state.pending_speech.source
        elif state.turn is not None and state.turn.speech is not None:
            speech = state.turn.speech
            source = e.source or str(get_attr(speech, sc.VOICE_SPEECH_SOURCE, CLIENT_VAD))
            out.append(finish(state, speech, t, last={sc.VOICE_SPEECH_SOURCE: source}))
            state.turn.user_audio_ms += (t - speech.start_ns) / 1e6
            state.turn.speech = None
            state.turn.speech_end_ns = t
            state.turn.speech_end_source = source
        elif state.turn is not None and state.turn.inference is None:
            # Its start went unseen (the turn opened at a transcript): the end still dates the answer's latency.
            state.turn.speech_end_ns = t
            state.turn.speech_end_source = e.source or CLIENT_VAD

    def _user_transcript(self, state: SessionState, e: ev.UserTranscript, t: int, out: list[FinishedSpan]) -> None:
        if state.pending_speech is not None:
            state.pending_speech.text = self.content.append(state.pending_speech.text, e.text)
            return
        turn = state.turn or self._open_turn(state, t, out)
        turn.user_text = self.content.append(turn.user_text, e.text)
        turn.last_user_transcript_ns = t

    # -- model ----------------------------------------------------------------------------------------

    def _response_start(self, state: SessionState, e: Any, t: int, out: list[FinishedSpan]) -> None:
        turn = state.turn or self._open_turn(state, t, out)
        if turn.inference is not None and turn.response_done_ns is not None:
            # The next response of the same turn (after a tool call): the completed one's span ends.
            inference, done_ns = turn.inference, turn.response_done_ns
            last = settle_response(self.options.pricer, state, turn)
            out.append(self._finish_inference(state, inference, max(inference.start_ns, done_ns), last))
        first = turn.inference is None and not turn.responses
        self._inference(state, t, out)
        latency = self._latency(turn, t)
        if first and latency is not None:
            set_attr(turn.span, sc.VOICE_LATENCY_USER_TO_FIRST_CHUNK_MS, latency[0])

    def _latency(self, turn: TurnState, t: int) -> tuple[float, str] | None:
        """Milliseconds since the user stopped speaking, and how that moment was known. None when unknown, or
        when the answer's time lies before that moment: a client clock the gateway corrected for one event and
        not the other (sent ahead of its arrival without ``sent_at``) says nothing about the latency."""
        if turn.speech_end_ns is not None:
            since, source = turn.speech_end_ns, turn.speech_end_source
        elif turn.last_user_transcript_ns is not None:
            since, source = turn.last_user_transcript_ns, "input_transcript"
        else:
            return None
        return ((t - since) / 1e6, source) if t >= since else None

    def _audio_start(self, state: SessionState, e: Any, t: int, out: list[FinishedSpan]) -> None:
        inference = self._inference(state, t, out)
        turn = state.turn
        assert turn is not None
        if turn.first_audio_ns is not None:
            return
        turn.first_audio_ns = t
        set_attr(inference, sc.VOICE_FIRST_AUDIO_TIME, t)
        add_event(inference, SpanEvent(sc.EVENT_FIRST_AUDIO, t))
        latency = self._latency(turn, t)
        if latency is not None:
            set_attrs(turn.span, sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS, latency[0],
                      sc.VOICE_LATENCY_SOURCE, latency[1])
            state.first_audio_ms = (*state.first_audio_ms, latency[0])

    def _playback_start(self, state: SessionState, e: Any, t: int, out: list[FinishedSpan]) -> None:
        turn = state.turn
        if turn is None or turn.first_playback_ns is not None:
            return
        turn.first_playback_ns = t
        add_event(turn.span, SpanEvent(sc.EVENT_FIRST_PLAYBACK, t))
        latency = self._latency(turn, t)
        if latency is not None:
            if get_attr(turn.span, sc.VOICE_LATENCY_SOURCE) is not None:  # as the first audio found it
                set_attr(turn.span, sc.VOICE_LATENCY_USER_TO_FIRST_PLAYBACK_MS, latency[0])
            else:
                set_attrs(turn.span, sc.VOICE_LATENCY_USER_TO_FIRST_PLAYBACK_MS, latency[0],
                          sc.VOICE_LATENCY_SOURCE, latency[1])

    def _model_transcript(self, state: SessionState, e: ev.ModelTranscript, t: int, out: list[FinishedSpan]) -> None:
        held = self._awaiting_turn_complete(state)
        if held is not None:  # the interrupted generation's transcript, trailing its audio
            held.model_text = self.content.append(held.model_text, e.text)
            return
        self._inference(state, t, out)
        assert state.turn is not None
        state.turn.model_text = self.content.append(state.turn.model_text, e.text)

    def _generation_complete(self, state: SessionState, e: Any, t: int, out: list[FinishedSpan]) -> None:
        turn = state.turn if self._generating(state) else self._awaiting_turn_complete(state)
        if turn is not None and turn.inference is not None:
            add_event(turn.inference, SpanEvent(sc.EVENT_GENERATION_COMPLETE, t))
            if turn is state.turn:
                turn.response_done_ns = t

    def _after_turn(self, state: SessionState, out: list[FinishedSpan]) -> None:
        if state.pending_speech is not None:
            self._open_turn(state, state.pending_speech.start_ns, out)

    def _turn_complete(self, state: SessionState, e: ev.ModelTurnComplete, t: int, out: list[FinishedSpan]) -> None:
        if not self._generating(state):
            # Gemini ends an interrupted generation with a turn_complete of its own ("interrupted >
            # turn_complete"): it closes the interrupted turn, never the one the barge-in opened.
            if self._awaiting_turn_complete(state) is not None:
                self._release(state, out)
                return
            if state.expect_trailing_turn_complete:
                state.expect_trailing_turn_complete = False
                return
        turn = state.turn
        if turn is None:
            return
        turn.finish_reason = e.reason or "stop"
        playing = turn.first_playback_ns is not None and not turn.playback_ended
        self._close_turn(state, t, sc.END_COMPLETED, out, hold=AWAIT_PLAYBACK if playing else None)
        self._after_turn(state, out)

    def _playback_end(self, state: SessionState, e: Any, t: int, out: list[FinishedSpan]) -> None:
        held = state.held
        if held is not None and held.awaiting == AWAIT_PLAYBACK:
            add_event(held.span, SpanEvent(sc.EVENT_PLAYBACK_END, t))
            self._release(state, out)
        elif state.turn is not None and state.turn.first_playback_ns is not None and not state.turn.playback_ended:
            state.turn.playback_ended = True
            add_event(state.turn.span, SpanEvent(sc.EVENT_PLAYBACK_END, t))

    def _interrupted(self, state: SessionState, e: ev.ModelInterrupted, t: int, out: list[FinishedSpan]) -> None:
        """A barge-in cuts the model's output: the generation under way, else the turn whose audio still
        plays after its generation finished, else nothing the gateway can see (it is counted all the same)."""
        attrs: Attrs = {}
        if e.played_ms is not None:
            attrs[sc.VOICE_INTERRUPTION_PLAYED_MS] = e.played_ms
        if e.generated_ms is not None:
            attrs[sc.VOICE_INTERRUPTION_GENERATED_MS] = e.generated_ms
        held = state.held
        if self._generating(state):
            turn = state.turn
            assert turn is not None
            self._count_interruption(state, turn, t, attrs)
            self._close_turn(state, t, sc.END_INTERRUPTED, out, hold=AWAIT_TURN_COMPLETE)
            self._after_turn(state, out)
        elif held is not None and held.awaiting == AWAIT_PLAYBACK:
            held.end_ns, held.end_reason = max(t, held.end_ns or t), sc.END_INTERRUPTED
            self._count_interruption(state, held, t, attrs)
            self._release(state, out)
        elif held is not None and held.awaiting == AWAIT_TURN_COMPLETE:
            # The same barge-in reported twice (the provider's signal and the player's stop): one interruption,
            # completed with what the second report knows.
            for key, value in attrs.items():
                set_default_attr(held.span, key, value)
            for event in reversed(state.root_events):
                if event.name == sc.EVENT_INTERRUPTION and event.attributes.get(sc.VOICE_TURN_NUMBER) == held.number:
                    for key, value in attrs.items():
                        event.attributes.setdefault(key, value)
                    break
        else:
            # Nothing generating or playing: the open turn (the user still speaking) goes on, and a trailing
            # turn_complete of the interrupted generation must not close it.
            state.interruption_count += 1
            root_event(state, SpanEvent(sc.EVENT_INTERRUPTION, t, dict(attrs)))
            state.expect_trailing_turn_complete = True

    def _count_interruption(self, state: SessionState, turn: TurnState, t: int, attrs: Attrs) -> None:
        state.interruption_count += 1
        attrs[sc.VOICE_TURN_NUMBER] = turn.number
        update_attrs(turn.span, attrs)
        root_event(state, SpanEvent(sc.EVENT_INTERRUPTION, t, dict(attrs)))

    def _usage(self, state: SessionState, e: ev.ModelUsage, t: int, out: list[FinishedSpan]) -> None:
        usage = normalize_usage(e.usage)
        held = self._awaiting_turn_complete(state)
        if held is not None:  # Gemini's usage for an interrupted generation rides on its trailing turn_complete
            held.usage = usage
            held.usage_reports += 1
        elif state.turn is not None:
            state.turn.usage = usage  # reports are cumulative within a turn: the last one wins
            state.turn.usage_reports += 1
        elif state.last_turn_usage is not None or state.last_turn_cost is not None:
            # Arrived after its turn closed: correct the session totals (usage and cost, the cost perhaps
            # estimated from audio until now); the turn's spans are already out.
            previous = (state.last_turn_usage or Usage()).to_dict()
            state.usage_total = Usage.from_dict(
                {k: v - previous[k] for k, v in state.usage_total.to_dict().items()}
            ) + usage
            state.last_turn_usage = usage
            reprice_last_turn(self.options.pricer, state, usage)
        else:
            state.usage_total = state.usage_total + usage

    # -- tools ----------------------------------------------------------------------------------------

    def _tool_call(self, state: SessionState, e: ev.ToolCall, t: int, out: list[FinishedSpan]) -> None:
        if e.call_id in state.tools:
            return
        if not self._generating(state):  # the model asking for a tool is model output of a new generation
            self._release(state, out)
            state.expect_trailing_turn_complete = False
        turn = state.turn or self._open_turn(state, t, out)
        state.tool_call_count += 1
        attrs: Attrs = {  # more than a tuple's few (gateway.sessions.records.TUPLE_PAIRS)
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: e.name,
            sc.GEN_AI_TOOL_CALL_ID: e.call_id,
            sc.GEN_AI_TOOL_TYPE: "function",
            sc.VOICE_TURN_NUMBER: turn.number,
        }
        if self.options.tool_arguments and e.arguments is not None:
            attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = self.content.value(e.arguments)
        # Tools may outlive their turn (a result after a barge-in): they end at their own result.
        if state.tools is NO_TOOLS:
            state.tools = {}
        state.tools[e.call_id] = child(turn.span, f"{sc.SPAN_TOOL} {e.name}", t, attrs)
        if turn.inference is not None:
            turn.response_tool_calls += 1

    def _tool_result(self, state: SessionState, e: ev.ToolResult, t: int, out: list[FinishedSpan]) -> None:
        tool = state.tools.pop(e.call_id, None)
        if tool is None:
            return
        error = None
        last: Attrs
        if e.error is not None and e.error is not False:
            error = self.content.message(e.error if isinstance(e.error, str) else to_json(e.error))
            state.tool_error_count += 1
            last = {sc.ERROR_TYPE: "tool_error", sc.VOICE_TOOL_END_REASON: sc.END_ERROR}
        else:
            last = {sc.VOICE_TOOL_END_REASON: sc.END_COMPLETED}
        if self.options.tool_results and e.result is not None:
            last[sc.GEN_AI_TOOL_CALL_RESULT] = self.content.value(e.result)
        out.append(finish(state, tool, t, error, last=last))

    def _tool_cancel(self, state: SessionState, e: ev.ToolCancel, t: int, out: list[FinishedSpan]) -> None:
        for call_id in e.call_ids:
            tool = state.tools.pop(call_id, None)
            if tool is not None:
                out.append(finish(state, tool, t, last={sc.VOICE_TOOL_END_REASON: sc.END_CANCELLED}))

    # -- session --------------------------------------------------------------------------------------

    def _error(self, state: SessionState, e: ev.ErrorEvent, t: int, out: list[FinishedSpan]) -> None:
        state.error_count += 1
        attrs: Attrs = {sc.EXCEPTION_TYPE: e.error_type}
        if e.message:
            attrs[sc.EXCEPTION_MESSAGE] = self.content.message(e.message)
        if state.turn is not None:
            attrs[sc.VOICE_TURN_NUMBER] = state.turn.number
        root_event(state, SpanEvent(sc.EVENT_EXCEPTION, t, attrs))

    def _session_update(self, state: SessionState, e: ev.SessionUpdate, t: int, out: list[FinishedSpan]) -> None:
        if e.user_id:
            state.user_id = e.user_id
        if e.tags:
            state.tags = shared_tags((*state.tags, *e.tags))
        if e.attributes:
            state.attributes = {**state.attributes, **e.attributes}

    def _mark(self, state: SessionState, e: ev.Mark, t: int, out: list[FinishedSpan]) -> None:
        attrs: Attrs = {sc.VOICE_MARK_NAME: e.name}
        attrs.update(e.attributes or {})
        event = SpanEvent(e.name, t, attrs)
        if state.turn is not None:
            add_event(state.turn.span, event)
        else:
            root_event(state, event)
