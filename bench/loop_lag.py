"""The gateway's event-loop lag from its ``/metrics`` text (``vtg_event_loop_lag_seconds``), for bench/run.py.

    before = loop_lag(scrape_text_1); after = loop_lag(scrape_text_2)
    window = after.since(before)          # what happened between the two scrapes
    window.quantile(0.99), window.share_above(0.005), window.mean_s

Quantiles come from the histogram's buckets: the upper bound of the bucket the quantile falls in, so they
are upper estimates at the buckets' resolution (0.5, 1, 2.5, 5, 10, 25, 50, 100 ms...).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NAME = "vtg_event_loop_lag_seconds"
_SAMPLE = re.compile(rf'^{NAME}_(bucket|count|sum)(?:\{{le="([^"]+)"\}})? (\S+)$', re.M)


@dataclass(frozen=True)
class LoopLag:
    buckets: tuple[tuple[float, float], ...]  # (upper bound in s, cumulative count), ascending, +Inf last
    count: float
    sum_s: float

    def since(self, earlier: LoopLag) -> LoopLag:
        before = dict(earlier.buckets)
        return LoopLag(tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
                       self.count - earlier.count, self.sum_s - earlier.sum_s)

    @property
    def mean_s(self) -> float:
        return self.sum_s / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (inf: above the largest finite bucket)."""
        if not self.count:
            return math.nan
        rank = q * self.count
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                return le
        return math.inf

    def share_above(self, seconds: float) -> float:
        """Share of the samples later than ``seconds`` (a bucket bound: exact)."""
        if not self.count:
            return math.nan
        at_or_below = max((n for le, n in self.buckets if le <= seconds), default=0.0)
        return 1 - at_or_below / self.count


def loop_lag(metrics_text: str) -> LoopLag | None:
    """The histogram in one ``/metrics`` scrape; None if the gateway does not export it."""
    buckets: list[tuple[float, float]] = []
    count = total = None
    for kind, le, value in _SAMPLE.findall(metrics_text):
        if kind == "bucket":
            buckets.append((math.inf if le == "+Inf" else float(le), float(value)))
        elif kind == "count":
            count = float(value)
        else:
            total = float(value)
    if count is None or total is None:
        return None
    return LoopLag(tuple(sorted(buckets)), count, total)
