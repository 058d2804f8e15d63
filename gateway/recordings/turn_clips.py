"""Per-turn clips of a stored call: each turn's user audio (the left channel) and model audio (the right), cut on
the gateway from the recording once it is complete, for Langfuse media on the turn's observation.

Why on the gateway rather than recorded per turn in the browser: the browser knows the call, not the gateway's
turns (their span ids, and where a turn held for playback ends); a second and third MediaRecorder per turn would
double the uploads during the call, and a tab closed mid-turn would lose them. The stored recording has both
sides already; one decoding pass over it, after the call, gives every clip.

Bounded: the recording is spooled from the store to a temporary file (never held in memory), decoded once in
order (PyAV, FFmpeg's libraries; frames of a few milliseconds), and each clip is encoded as it goes (Opus in Ogg,
mono, 32 kb/s: Langfuse plays ``audio/ogg``; its media types have no ``audio/webm``) into a file of its own. A clip
is at most ``MAX_CLIP_S`` long; at most ``MAX_TURNS`` turns a call. It runs in a worker thread, one call at a
time (the publisher's loop), so it costs one core at most, for a fraction of the call's length.

Which turns: the recording trace annotation (``trace.annotate``) notes every turn span that got a range on the
recording, in this process (``TURNS``), with the messages of its input and output; the publisher takes them
when it publishes the call. Like the call's publication, this is per replica and in memory.
"""

from __future__ import annotations

import array
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av

RATE = 48_000  # Opus's own rate: the recording decodes to it, the clips encode from it
CLIP_BIT_RATE = 32_000
CLIP_TYPE = "audio/ogg"
MAX_CLIP_S = 600.0
MAX_TURNS = 500  # per call
MAX_SESSIONS = 10_000
MAX_MESSAGES_CHARS = 32_768  # a turn's input/output messages kept for the observation update; longer ones are left
MAX_TOTAL_CHARS = 16 * 1024 * 1024  # all turns' messages waiting in this process; past it turns wait without them


@dataclass(frozen=True, slots=True)
class TurnRange:
    """One turn on the recording: its span (Langfuse's observation id) and its seconds from the recording's 0."""

    span_id: str
    start_s: float
    end_s: float
    input_messages: str | None = None  # gen_ai.input.messages, JSON text
    output_messages: str | None = None


@dataclass(frozen=True, slots=True)
class TurnClips:
    turn: TurnRange
    user: Path  # the left channel over the turn's range
    model: Path  # the right channel


class TurnLog:
    """Turns of recorded sessions, noted as their spans end, until the call is published (bounded, thread-safe).

    Off until a Langfuse media publisher exists in this process (``enable``): without one nothing would take them.
    """

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_turns: int = MAX_TURNS,
                 max_chars: int = MAX_TOTAL_CHARS) -> None:
        self._lock = threading.Lock()
        self._turns: OrderedDict[str, dict[str, TurnRange]] = OrderedDict()
        self._chars = 0
        self.enabled = False
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self.max_chars = max_chars

    def enable(self) -> None:
        self.enabled = True

    def add(self, session_id: str, turn: TurnRange) -> None:
        if not self.enabled:
            return
        with self._lock:
            turns = self._turns.setdefault(session_id, {})
            old = turns.get(turn.span_id)
            if old is None and len(turns) >= self.max_turns:
                return
            self._chars -= _chars(old)
            if self._chars + _chars(turn) > self.max_chars:
                turn = TurnRange(turn.span_id, turn.start_s, turn.end_s)  # the audio still goes, the words not
            turns[turn.span_id] = turn  # a retried state mutation notes the same span again
            self._chars += _chars(turn)
            while len(self._turns) > self.max_sessions:
                _, dropped = self._turns.popitem(last=False)
                self._chars -= sum(_chars(t) for t in dropped.values())

    def pop(self, session_id: str) -> list[TurnRange]:
        with self._lock:
            turns = self._turns.pop(session_id, {})
            self._chars -= sum(_chars(t) for t in turns.values())
        return sorted(turns.values(), key=lambda t: t.start_s)


def _chars(turn: TurnRange | None) -> int:
    return 0 if turn is None else len(turn.input_messages or "") + len(turn.output_messages or "")


TURNS = TurnLog()


def cut(source: Path, turns: list[TurnRange], out_dir: Path) -> list[TurnClips]:
    """Every turn's two clips from the stereo recording at ``source``, in one decoding pass (blocking: call it in
    a worker thread)."""
    import av  # FFmpeg's libraries: loaded only when a call is cut

    wanted = [t for t in turns if t.end_s > t.start_s][:MAX_TURNS]
    bounds = [(int(max(0.0, t.start_s) * RATE), int(min(t.end_s, max(0.0, t.start_s) + MAX_CLIP_S) * RATE))
              for t in wanted]
    writers: dict[int, list[tuple[av.container.OutputContainer, av.audio.stream.AudioStream]]] = {}
    paths = [(out_dir / f"turn-{i}-user.ogg", out_dir / f"turn-{i}-model.ogg") for i in range(len(wanted))]
    done: set[int] = set()

    def close(i: int) -> None:
        for container, stream in writers.pop(i, []):
            for packet in stream.encode(None):
                container.mux(packet)
            container.close()
        done.add(i)

    try:
        with av.open(str(source)) as recording:
            resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
            pos = 0  # samples decoded so far: the recording plays without gaps, so this is its time
            for frame in recording.decode(audio=0):
                for out in resampler.resample(frame):
                    n = out.samples
                    interleaved = array.array("h", bytes(out.planes[0])[: n * 4])
                    for i, (lo, hi) in enumerate(bounds):
                        a, b = max(lo, pos), min(hi, pos + n)
                        if i in done or a >= b:
                            if hi <= pos and i in writers:
                                close(i)
                            continue
                        if i not in writers:
                            writers[i] = [_writer(path) for path in paths[i]]
                        for channel, (container, stream) in enumerate(writers[i]):
                            mono = interleaved[(a - pos) * 2 + channel:(b - pos) * 2:2]
                            clip_frame = av.AudioFrame(format="s16", layout="mono", samples=len(mono))
                            clip_frame.sample_rate = RATE
                            clip_frame.planes[0].update(mono.tobytes())
                            for packet in stream.encode(clip_frame):
                                container.mux(packet)
                    pos += n
    finally:
        for i in list(writers):
            close(i)
    return [TurnClips(t, *paths[i]) for i, t in enumerate(wanted) if i in done]


def _writer(path: Path) -> tuple[av.container.OutputContainer, av.audio.stream.AudioStream]:
    import av

    container = av.open(str(path), "w", format="ogg")
    stream = container.add_stream("libopus", rate=RATE, layout="mono")
    stream.bit_rate = CLIP_BIT_RATE
    return container, stream
