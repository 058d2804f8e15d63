"""Histogram series recorded together export exactly what recording each value with ``Histogram.record`` does:
under cumulative and delta temporality, through views that filter attributes or change or drop the
aggregation, with exemplars when the filter samples, and refusing what ``record`` refuses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.trace import TracerProvider

from gateway.analytics.histograms import HistogramRecorder

Labels = tuple[tuple[str, str], ...]
TURN: Labels = (("gen_ai.provider.name", "gcp.gemini"), ("voice.turn.end_reason", "completed"))
TOOL: Labels = (("gen_ai.provider.name", "openai"), ("gen_ai.tool.name", "lookup"))
# Float sums depend on the order of the values: these do not add up the same in every order.
VALUES = [0.1, 0.2, 0.30000000000000004, 1e-9, 7.25, 0.7, 12.0, 0.0, 3.3333333333333335]


def points(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    point = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)
                             if "time_unix_nano" not in f.name and f.name != "exemplars"}
                    point["exemplars"] = sorted((e.value, tuple(sorted((e.filtered_attributes or {}).items())))
                                                for e in p.exemplars)
                    out.append({"name": metric.name, "unit": metric.unit, **point})
    return sorted(out, key=repr)


def run(record_together: bool, series: Sequence[tuple[Labels, Sequence[float]]], *, views: Sequence[View] = (),
        delta: bool = False, exemplar_filter: Any = None, collect_between: bool = False) -> list[dict[str, Any]]:
    temporality: dict[type, AggregationTemporality] = {Histogram: AggregationTemporality.DELTA} if delta else {}
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    kwargs: dict[str, Any] = {"exemplar_filter": exemplar_filter} if exemplar_filter is not None else {}
    provider = MeterProvider(metric_readers=[reader], views=list(views), **kwargs)
    histogram = provider.get_meter("test").create_histogram("voice.turn.duration", unit="s",
                                                            explicit_bucket_boundaries_advisory=(0.1, 0.5, 1, 5))
    recorder = HistogramRecorder()
    collected: list[dict[str, Any]] = []
    for labels, values in series:
        attributes = dict(labels)
        if record_together:
            recorder.record({(histogram, labels): values})
        else:
            for value in values:
                histogram.record(value, attributes)
        if collect_between:
            collected += points(reader)
    return collected + points(reader)


def same_either_way(series: Sequence[tuple[Labels, Sequence[float]]], **kwargs: Any) -> list[dict[str, Any]]:
    one_by_one = run(False, series, **kwargs)
    together = run(True, series, **kwargs)
    assert together == one_by_one
    return together


def test_counts_sums_buckets_and_extremes_are_those_of_recording_each_value() -> None:
    got = same_either_way([(TURN, VALUES[:4]), (TOOL, VALUES[4:]), (TURN, VALUES[4:])])
    turn = next(p for p in got if p["attributes"] == dict(TURN))
    assert turn["count"] == len(VALUES) and turn["min"] == 0.0 and turn["max"] == 12.0


def test_delta_temporality_collected_between_requests_loses_and_repeats_nothing() -> None:
    got = same_either_way([(TURN, VALUES[:3]), (TURN, VALUES[3:]), (TOOL, VALUES)], delta=True,
                          collect_between=True)
    assert sum(p["count"] for p in got if p["attributes"] == dict(TURN)) == len(VALUES)


def test_views_filter_attributes_change_or_drop_the_aggregation_as_they_would() -> None:
    keep_provider = View(instrument_name="voice.turn.duration", attribute_keys={"gen_ai.provider.name"},
                         aggregation=ExponentialBucketHistogramAggregation())
    got = same_either_way([(TURN, VALUES), (TOOL, VALUES[:2])], views=[keep_provider])
    assert {tuple(p["attributes"].items()) for p in got} == {(("gen_ai.provider.name", "gcp.gemini"),),
                                                             (("gen_ai.provider.name", "openai"),)}
    assert same_either_way([(TURN, VALUES)], views=[View(instrument_name="*", aggregation=DropAggregation())]) == []


def test_a_filter_that_samples_exemplars_gets_every_value_offered() -> None:
    got = same_either_way([(TURN, VALUES)], exemplar_filter=AlwaysOnExemplarFilter())
    assert got[0]["exemplars"]


def test_values_record_refuses_are_dropped_and_the_others_kept() -> None:
    got = same_either_way([(TURN, [0.5, -1.0, float("nan"), 2.0])])
    assert got[0]["count"] == 2


def test_with_the_default_exemplar_filter_outside_a_span_no_value_takes_record_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("recorded one by one")

    expected = run(False, [(TURN, VALUES)])
    monkeypatch.setattr(_Histogram, "record", refuse)
    assert run(True, [(TURN, VALUES)]) == expected
    assert run(True, [(TURN, VALUES)], delta=True, collect_between=True) == expected


def test_inside_a_sampled_span_the_default_filter_keeps_its_exemplars() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request"):
        got = same_either_way([(TURN, VALUES)])
    assert got[0]["exemplars"] and got[0]["count"] == len(VALUES)


def test_several_histograms_and_series_in_one_call_each_get_their_own_values() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    turns, tools = meter.create_histogram("voice.turn.duration"), meter.create_histogram("voice.tool.duration")
    HistogramRecorder().record({(turns, TURN): VALUES[:5], (tools, TURN): VALUES[5:], (turns, TOOL): [1.0]})
    got = {(p["name"], tuple(p["attributes"].items())): (p["count"], p["sum"]) for p in points(reader)}
    assert got == {("voice.turn.duration", TURN): (5, sum(VALUES[:5])),
                   ("voice.tool.duration", TURN): (4, sum(VALUES[5:])), ("voice.turn.duration", TOOL): (1, 1.0)}


def test_a_reader_added_later_gets_the_values_recorded_after_it_joined() -> None:
    def play(record_together: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first, second = InMemoryMetricReader(), InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[first])
        histogram = provider.get_meter("test").create_histogram("voice.turn.duration")
        recorder = HistogramRecorder()
        for values in (VALUES[:4], VALUES[4:]):
            if values != VALUES[:4]:
                provider.add_metric_reader(second)
            if record_together:
                recorder.record({(histogram, TURN): values})
            else:
                for value in values:
                    histogram.record(value, dict(TURN))
        return points(first), points(second)

    together = play(True)
    assert together == play(False)
    assert together[0][0]["count"] == len(VALUES) and together[1][0]["count"] == len(VALUES) - 4


def test_ints_and_floats_mixed_keep_the_types_and_extremes_record_gives_them() -> None:
    # 0 and 0.0 compare equal: min and max must keep whichever record() would have kept, and int sums stay int.
    mixed = [3, 0.0, 0, 2.5, 7, 7.0, 1e-9]
    got = same_either_way([(TURN, mixed), (TOOL, [5, 0, 12])])
    assert {repr(p["min"]) for p in got} == {"0.0", "0"} and any(type(p["sum"]) is int for p in got)
    no_extremes = View(instrument_name="*", aggregation=ExplicitBucketHistogramAggregation((1.0, 4.0),
                                                                                          record_min_max=False))
    got = same_either_way([(TURN, mixed), (TURN, VALUES)], views=[no_extremes])
    assert got[0]["bucket_counts"] == (9, 3, 4) and got[0]["min"] == math.inf


def test_the_default_aggregation_takes_the_values_without_a_measurement_each(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = run(False, [(TURN, VALUES), (TOOL, VALUES[:3])])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("aggregated one by one")

    monkeypatch.setattr(_ExplicitBucketHistogramAggregation, "aggregate", refuse)
    assert run(True, [(TURN, VALUES), (TOOL, VALUES[:3])]) == expected
    assert run(True, [(TURN, VALUES), (TOOL, VALUES[:3])], delta=True, collect_between=True) == expected
