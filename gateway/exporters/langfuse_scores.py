"""Langfuse scores for finished voice sessions, derived from the ``voice_session`` root the exporter just sent.

After a batch of spans reaches Langfuse, the Langfuse exporter hands the batch here; every session root in it
gets up to four trace scores, posted to Langfuse's public REST endpoint ``POST {host}/api/public/scores``
(``CreateScoreRequest``; the batch ``/api/public/ingestion`` endpoint is documented as legacy). Same Basic
auth as the spans. Each score is skipped when the root lacks the attribute it is computed from:

    voice_session_outcome              CATEGORICAL  "completed" when voice.session.end_reason is completed or
                                                    user_disconnect, else "abandoned" (timeout, error,
                                                    gateway_shutdown, anything else); the reason in the comment
    voice_interruption_rate            NUMERIC      voice.session.interruption_count / turn_count (no turns: none)
    voice_time_to_first_audio_p95_ms   NUMERIC      voice.latency.user_to_first_audio_p95_ms
    voice_tool_error_count             NUMERIC      voice.session.tool_error_count

Each score's ``id`` is a UUIDv5 of the trace id and the score name. Langfuse keeps a client-given id and upserts
on it, so a repeat (a retried batch, another replica, a restart) overwrites the score instead of adding one. In
one process a trace is scored once at most: its id is remembered in a bounded set before anything is posted.

Scores never cost the spans: they are posted only after a successful span export, a failure is logged and
counted (``stats``), never raised, and the posts of one batch share the exporter's timeout as their budget, each
request capped at ``REQUEST_TIMEOUT_S``; the first connection failure or timeout gives up on the rest of the batch.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import certifi
import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.util.types import AttributeValue

from gateway import __version__
from gateway import semconv as sc

_logger = logging.getLogger(__name__)

SCORES_PATH: Final = "/api/public/scores"
REQUEST_TIMEOUT_S: Final = 2.0
REMEMBERED_TRACES: Final = 10_000

SCORE_OUTCOME: Final = "voice_session_outcome"
SCORE_INTERRUPTION_RATE: Final = "voice_interruption_rate"
SCORE_TTFA_P95_MS: Final = "voice_time_to_first_audio_p95_ms"
SCORE_TOOL_ERRORS: Final = "voice_tool_error_count"

OUTCOME_COMPLETED: Final = "completed"
OUTCOME_ABANDONED: Final = "abandoned"
# End reasons of a call the user finished; everything else (timeout, error, gateway_shutdown, a client's own
# short string) is a call that did not reach its end.
COMPLETED_END_REASONS: Final = frozenset({sc.END_COMPLETED, "user_disconnect"})

# The Langfuse exporter puts the trace's environment on every span it sends; a score carries the same one, or
# Langfuse files it under "default" and an environment filter hides it next to its trace.
LF_ENVIRONMENT: Final = "langfuse.environment"
# Fixed forever: changing it would give every score a new id, and re-posted scores would duplicate.
_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:voice-trace-gateway:langfuse-score")
_MAX_COMMENT: Final = 200

DataType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN"]


@dataclass(frozen=True)
class Score:
    name: str
    value: float | int | str
    data_type: DataType
    comment: str | None = None


@dataclass(frozen=True)
class ScoreStats:
    """What one exporter did with scores: posted (2xx), failed (any other answer, no answer, out of time) and
    roots skipped because this process had already scored their trace."""

    posted: int = 0
    failed: int = 0
    already_scored: int = 0


def is_session_root(span: ReadableSpan) -> bool:
    return span.name == sc.SPAN_SESSION or span.name.startswith(sc.SPAN_SESSION + " ")


def session_scores(attrs: Mapping[str, AttributeValue]) -> list[Score]:
    """The scores a session root's attributes support; an absent or malformed attribute skips its score."""
    scores: list[Score] = []
    reason = attrs.get(sc.VOICE_SESSION_END_REASON)
    if isinstance(reason, str) and reason.strip():
        reason = reason.strip()
        outcome = OUTCOME_COMPLETED if reason in COMPLETED_END_REASONS else OUTCOME_ABANDONED
        scores.append(Score(SCORE_OUTCOME, outcome, "CATEGORICAL", f"end reason: {reason}"[:_MAX_COMMENT]))
    turns = _count(attrs, sc.VOICE_SESSION_TURN_COUNT)
    interruptions = _count(attrs, sc.VOICE_SESSION_INTERRUPTION_COUNT)
    if turns and interruptions is not None:
        comment = f"{interruptions} of {turns} turns interrupted"
        scores.append(Score(SCORE_INTERRUPTION_RATE, interruptions / turns, "NUMERIC", comment))
    p95 = _number(attrs, sc.VOICE_LATENCY_TTFA_P95_MS)
    if p95 is not None:
        scores.append(Score(SCORE_TTFA_P95_MS, p95, "NUMERIC"))
    tool_errors = _count(attrs, sc.VOICE_SESSION_TOOL_ERROR_COUNT)
    if tool_errors is not None:
        scores.append(Score(SCORE_TOOL_ERRORS, tool_errors, "NUMERIC"))
    return scores


def score_id(trace_id: str, name: str) -> str:
    """The score's idempotency key: the same trace and score name always give the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{trace_id}/{name}"))


def score_body(trace_id: str, score: Score, environment: str | None = None) -> dict[str, Any]:
    """A ``CreateScoreRequest`` for a trace score (no ``observationId``: the score belongs to the trace)."""
    body: dict[str, Any] = {
        "id": score_id(trace_id, score.name),
        "traceId": trace_id,
        "name": score.name,
        "value": score.value,
        "dataType": score.data_type,
    }
    if score.comment:
        body["comment"] = score.comment
    if environment:
        body["environment"] = environment
    return body


class ScorePoster:
    """Posts the scores of the session roots in an exported batch; thread-safe, never raises from ``post``."""

    def __init__(
        self, base_url: str, authorization: str, timeout_s: float, remember: int = REMEMBERED_TRACES
    ) -> None:
        self.url = base_url + SCORES_PATH
        self._timeout_s = timeout_s
        self._remember = max(1, remember)
        self._scored: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = ScoreStats()
        self._client = httpx.Client(
            headers={
                "authorization": authorization,
                "accept": "application/json",
                "user-agent": f"voice-trace-gateway/{__version__}",
            },
            # Like the span exporter: the public CA bundle, never a collector CA from the environment.
            verify=ssl.create_default_context(cafile=certifi.where()),
            timeout=min(REQUEST_TIMEOUT_S, timeout_s),
            follow_redirects=False,
        )

    @property
    def stats(self) -> ScoreStats:
        with self._lock:
            return self._stats

    def post(self, spans: Sequence[ReadableSpan]) -> None:
        """Score every session root in ``spans`` whose trace this process has not scored yet."""
        try:
            deadline = time.monotonic() + self._timeout_s
            given_up: str | None = None
            for root in (span for span in spans if is_session_root(span)):
                given_up = self._post_root(root, deadline, given_up)
        except Exception:
            _logger.exception("Langfuse scores: unexpected failure; the spans were exported")

    def close(self) -> None:
        self._client.close()

    def _post_root(self, root: ReadableSpan, deadline: float, given_up: str | None) -> str | None:
        """Post one root's scores, unless an earlier post of the batch ``given_up``; returns why the batch
        should stop trying (Langfuse did not answer, or the budget is spent), else None."""
        trace_id = format(root.context.trace_id, "032x") if root.context is not None else None
        if trace_id is None or not self._claim(trace_id):
            return given_up
        attrs: Mapping[str, AttributeValue] = root.attributes or {}
        environment = attrs.get(LF_ENVIRONMENT)
        bodies = [
            score_body(trace_id, score, environment if isinstance(environment, str) else None)
            for score in session_scores(attrs)
        ]
        posted = 0
        problem = given_up
        for body in bodies if given_up is None else ():
            left = deadline - time.monotonic()
            if left <= 0:
                problem = given_up = "out of time (the exporter's timeout)"
                break
            try:
                response = self._client.post(self.url, json=body, timeout=min(REQUEST_TIMEOUT_S, left))
            except httpx.HTTPError as error:
                problem = given_up = f"no answer: {type(error).__name__}: {error}"
                break
            if response.is_success:
                posted += 1
            else:
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code == 404:
                    problem += "; a collector in front of Langfuse relays no scores: set the exporter's scores_host"
        failed = len(bodies) - posted
        self._count(posted=posted, failed=failed)
        if failed:
            _logger.warning(
                "Langfuse scores for trace %s: %d of %d not posted (%s)", trace_id, failed, len(bodies), problem
            )
        return given_up

    def _claim(self, trace_id: str) -> bool:
        with self._lock:
            if trace_id in self._scored:
                self._stats = replace(self._stats, already_scored=self._stats.already_scored + 1)
                return False
            self._scored[trace_id] = None
            while len(self._scored) > self._remember:
                self._scored.popitem(last=False)
            return True

    def _count(self, posted: int, failed: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, posted=self._stats.posted + posted, failed=self._stats.failed + failed)


def _number(attrs: Mapping[str, AttributeValue], key: str) -> float | int | None:
    """A finite non-negative number, else None."""
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _count(attrs: Mapping[str, AttributeValue], key: str) -> int | None:
    value = _number(attrs, key)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value
