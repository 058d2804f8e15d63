"""A histogram series' values recorded together, with what ``Histogram.record`` would make of them one by one.

Why: in the pinned SDK one ``Histogram.record`` costs some 20 µs (a ``Measurement`` that cleans the
attributes again, the exemplar filter, and per reader and view the attributes copied and hashed into the
series key, then the aggregation under its lock), and the OTel API has no bulk record. A request's spans
give a few values per series; recorded here, the series key is worked out once per series (and cached), and
each value costs only the aggregation's own ``aggregate``.

How: the SDK's own path below ``record``, kept whole where it decides anything: every reader's storage,
every view's match of the instrument (so a view's attribute filter, another aggregation, drop, temporality
and the cardinality limit apply as before), the same series key (``_hash_attributes`` of the view-filtered
attributes), the series' aggregation created the same way, and each value handed to its ``aggregate`` in
order, so counts, sums, bucket counts, minimum and maximum come out bit for bit as from ``record``. For the
SDK's explicit-bucket histogram (the default aggregation) that ``aggregate`` is done here, under the
aggregation's own lock: the same additions, comparisons and bucket search in the same order, without a
``Measurement`` per value (nothing else reads it: the exemplar reservoir is offered nothing, as above).

Where that path would need what it skips, each value goes through ``record`` instead: an instrument that
is not the SDK's (the API's no-op or proxy), a meter configured off, an exemplar filter that may sample
(anything but always_off, or trace_based outside a sampled span: the gateway records outside any span, so
the default filter never samples), a value ``record`` refuses (negative, not finite, which it logs), or an
SDK without these internals. ``tests/analytics/test_histograms.py`` compares both paths' exported points.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context, get_current
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, TraceBasedExemplarFilter
from opentelemetry.trace import get_current_span

Labels = tuple[tuple[str, str], ...]
_MAX_KEYS = 10_000

try:  # the SDK's internals as of the pinned version (pyproject); without them, record() per value
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
    from opentelemetry.sdk.metrics._internal.instrument import _Histogram as _SdkHistogram
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
    from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer

    _INTERNALS = True
except ImportError:  # pragma: no cover - another SDK version
    _INTERNALS = False


class Series:
    """One histogram's series (its label set), as ``record_series`` takes it: it keeps the plan worked out for
    it, so a caller that holds on to its series spares the lookup."""

    __slots__ = ("_plan", "_storages", "histogram", "labels")

    def __init__(self, histogram: Histogram, labels: Labels) -> None:
        self.histogram = histogram
        self.labels = labels
        # Per view match of the histogram in the reader storages it was worked out for: the match, the
        # attributes its view keeps, their series key. A storage's view matches of an instrument never change
        # once made; the storages change only when a reader is added or removed, and then replace the mapping
        # (so it is checked by identity).
        self._storages: object = None
        self._plan: list[tuple[Any, dict[str, Any], Any]] = []


class HistogramRecorder:
    """Records series of values into SDK histograms; holds the attribute dicts and series it built."""

    def __init__(self) -> None:
        self._attributes: dict[Labels, dict[str, str]] = {}
        self._series: dict[tuple[Histogram, Labels], Series] = {}

    def attributes(self, labels: Labels) -> dict[str, str]:
        """The same dict object for the same label set: built once, so a ``record`` only hashes it."""
        attrs = self._attributes.get(labels)
        if attrs is None:
            if len(self._attributes) >= _MAX_KEYS:
                self._attributes.clear()
            attrs = self._attributes[labels] = dict(labels)
        return attrs

    def record(self, series: Mapping[tuple[Histogram, Labels], Sequence[float]]) -> None:
        """``histogram.record(value, dict(labels))`` for each value of each (histogram, labels) series, in
        order within a series."""
        self.record_series([(self._known(key), values) for key, values in series.items()])

    def _known(self, key: tuple[Histogram, Labels]) -> Series:
        found = self._series.get(key)
        if found is None:
            if len(self._series) >= _MAX_KEYS:
                self._series.clear()
            found = self._series[key] = Series(*key)
        return found

    def record_series(self, series: Iterable[tuple[Series, Sequence[float]]]) -> None:
        """``record`` for series given as ``Series`` (two of the same histogram and labels may both come: their
        values go in one after the other)."""
        context = get_current()
        fast = _INTERNALS and not _may_sample_exemplars(context)
        now = time.time_ns()
        for one, values in series:
            if not (fast and _aggregate(one, values, context, now)):
                histogram, attributes = one.histogram, self.attributes(one.labels)
                for value in values:
                    histogram.record(value, attributes)


def _aggregate(series: Series, values: Sequence[float], context: Context, now: int) -> bool:
    """False when the values must go through ``record`` (nothing recorded then)."""
    histogram = series.histogram
    if type(histogram) is not _SdkHistogram or not histogram._is_enabled():
        return False
    consumer = histogram._measurement_consumer
    if type(consumer) is not SynchronousMeasurementConsumer or not _filter_never_samples(consumer):
        return False
    for value in values:
        if not math.isfinite(value) or value < 0:
            return False
    storages = consumer._reader_storages
    plan = series._plan if series._storages is storages else _plan(series, storages)
    measurements: list[Measurement] | None = None  # made for an aggregation of another kind only
    for match, kept, key in plan:
        if match._reset_on_collect:
            with match._lock:  # a delta collection swaps the aggregations: none may be lost
                aggregation = match._get_or_create_aggregation(key, kept)
                measurements = _into(aggregation, values, measurements, histogram, context, now)
            continue
        found = match._attributes_aggregation.get(key)
        if found is None:
            with match._lock:
                found = match._get_or_create_aggregation(key, kept)
        measurements = _into(found, values, measurements, histogram, context, now)
    return True


def _plan(series: Series, storages: Any) -> list[tuple[Any, dict[str, Any], Any]]:
    plan = []
    for storage in storages.values():
        for match in storage._get_or_init_view_instrument_match(series.histogram):
            # As _ViewInstrumentMatch.consume_measurement builds the key from a measurement's attributes.
            kept: dict[str, Any] = dict(series.labels)
            view_keys = match._view._attribute_keys
            if view_keys is not None:
                kept = {k: v for k, v in kept.items() if k in view_keys}
            plan.append((match, kept, _hash_attributes(kept)))
    series._storages, series._plan = storages, plan
    return plan


def _into(aggregation: Any, values: Sequence[float], measurements: list[Measurement] | None, histogram: Any,
          context: Context, now: int) -> list[Measurement] | None:
    """``aggregation.aggregate(Measurement(value, ...), False)`` for each value, in order; returns the measurements
    when it had to make them (to reuse for the next aggregation)."""
    if type(aggregation) is _ExplicitBucketHistogramAggregation:
        explicit: Any = aggregation  # its attributes as they are, not as the SDK's annotations say
        # Its aggregate(), value by value, inlined: the sum grows in the same order, min and max are folded in
        # the same order (so an int 0 and a float 0.0 come out as they would), the same bucket counts.
        with explicit._lock:
            counts = explicit._value
            if counts is None:
                counts = explicit._value = explicit._get_empty_bucket_counts()
            boundaries, total = explicit._boundaries, explicit._sum
            if explicit._record_min_max:
                low, high = explicit._min, explicit._max
                for value in values:
                    total += value
                    low = min(low, value)
                    high = max(high, value)
                    counts[bisect_left(boundaries, value)] += 1
                explicit._min, explicit._max = low, high
            else:
                for value in values:
                    total += value
                    counts[bisect_left(boundaries, value)] += 1
            explicit._sum = total
        return measurements
    if measurements is None:
        measurements = [Measurement(value, now, histogram, context, None) for value in values]
    for m in measurements:
        aggregation.aggregate(m, False)
    return measurements


def _may_sample_exemplars(context: Context) -> bool:
    """Whether the default filter (trace_based) would offer a value recorded now: inside a sampled span."""
    return bool(get_current_span(context).get_span_context().trace_flags.sampled)


def _filter_never_samples(consumer: Any) -> bool:
    """With a context outside a sampled span (``_may_sample_exemplars``): trace_based depends on it only."""
    kind = type(consumer._sdk_config.exemplar_filter)
    return kind is AlwaysOffExemplarFilter or kind is TraceBasedExemplarFilter
