"""Rolling windows: exact statistics over the last N seconds or the last N samples.

Memory is bounded for busy time windows too. A time window that only sums and counts (no
quantile, max/min or repeats) holds its samples one by one up to ``MERGE_AT`` (4,096) of them;
past that, a sample arriving within ``seconds / GRAIN_PARTS`` (1/4,096 of the window: 21 s of
24 hours, 0.15 s of 10 minutes) of the newest slot's first sample joins that slot, which leaves
the window with its newest sample. So such a window holds at most ~8,200 slots at any call rate
(a tenant's 24-hour budget at 100 calls a second kept 8.6M samples, ~1 GB), and a sample may be
counted up to 1/4,096 of the window longer than exactly, never shorter: a budget cap holds
spend a little longer, a pause waits for the slot. Below ``MERGE_AT`` samples nothing changes.

The maths lives here; what feeds the samples (live calls, the database when a meter opens, a
replay) lives elsewhere. Every update and query is O(1) amortized except quantiles, which keep a
sorted list (``bisect``): O(log n) to find, O(n) memmove to insert, a few microseconds at n=10,000.

Quantiles are exact over the window's samples, by linear interpolation between the closest ranks
(``numpy.percentile``'s default, ``method="linear"``): with sorted samples ``x[0..n-1]`` the q-th
quantile is ``x[i] + (x[i+1] - x[i]) * f`` where ``i + f = q * (n - 1)``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

__all__ = ["QUANTILES", "STATS", "Window", "WindowSpec", "quantile_of_sorted", "robust_z"]

QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
STATS = ("sum", "count", "rate", "mean", "max", "min", "last", *QUANTILES, "anomaly", "distinct")
# Below this many samples a robust z-score says nothing: "anomaly" reads 0.
ANOMALY_MIN_SAMPLES = 10
# Busy sum/count time windows: samples kept one by one up to MERGE_AT slots, then merged into
# slots 1/GRAIN_PARTS of the window wide (see the module docstring).
MERGE_AT = 4096
GRAIN_PARTS = 4096


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Which samples a window keeps: those of the last ``seconds``, or the last ``count`` ones."""

    seconds: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.count is None):
            raise ValueError("a window is either time (seconds) or count, not both")

    def describe(self) -> str:
        if self.count is not None:
            return f"last {self.count} calls"
        return f"{_format_seconds(self.seconds or 0)}"


def _format_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "d" and seconds < 3 * 86400):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def quantile_of_sorted(values: list[float], q: float) -> float | None:
    """Exact quantile ``q`` of already-sorted ``values`` by linear interpolation; None when empty."""
    n = len(values)
    if n == 0:
        return None
    position = q * (n - 1)
    low = math.floor(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return values[low] + (values[high] - values[low]) * fraction


def robust_z(sorted_values: list[float], x: float | None) -> float:
    """How unusual ``x`` is among ``sorted_values``: (x - median) / (1.4826 * MAD).

    The median absolute deviation, scaled to match a standard deviation for normal data, is not
    dragged by the spikes it is meant to find. With a MAD of zero (most samples identical), any
    x above the median reads as infinitely unusual. Fewer than ``ANOMALY_MIN_SAMPLES`` samples
    read 0.
    """
    n = len(sorted_values)
    if x is None or n < ANOMALY_MIN_SAMPLES:
        return 0.0
    median = quantile_of_sorted(sorted_values, 0.5) or 0.0
    if x == median:
        return 0.0
    deviations = sorted(abs(v - median) for v in sorted_values)
    mad = quantile_of_sorted(deviations, 0.5) or 0.0
    if mad == 0:
        return math.inf if x > median else -math.inf
    return (x - median) / (1.4826 * mad)


class Window:
    """Samples ``(ts, value)`` of one metric in one scope, with the statistics a policy asks for.

    Samples live in parallel lists with a moving head (amortized O(1) append and drop, and random
    access for binary search). ``_cum`` holds the running sum at each sample, so the exact time at
    which a sum drops to a level is a binary search, not a scan. ``_sorted`` is kept only when a
    quantile is needed (``keep_sorted``), the monotonic max/min queues only for ``max``/``min``,
    and a multiplicity counter only for ``keep_counts`` (repeated prompts). ``reserved`` holds
    budget reserved by in-flight calls (hard caps).
    """

    __slots__ = (
        "_cached",
        "_count",
        "_counts",
        "_cum",
        "_dropped",
        "_dropped_sum",
        "_grain",
        "_head",
        "_max",
        "_merge_at",
        "_min",
        "_n",
        "_resume",
        "_slot_start",
        "_sorted",
        "_ts",
        "_values",
        "_version",
        "count_limit",
        "last",
        "reserved",
        "seconds",
        "total",
    )

    def __init__(
        self,
        spec: WindowSpec,
        *,
        keep_sorted: bool = False,
        keep_extremes: bool = False,
        keep_counts: bool = False,
        merge_at: int = MERGE_AT,
    ) -> None:
        self.seconds = spec.seconds
        self.count_limit = spec.count
        self._ts: list[float] = []
        self._values: list[Any] = []
        self._cum: list[float] = []
        self._head = 0
        self._dropped = 0  # samples dropped since the window was made (numbers the samples)
        self._dropped_sum: float = 0
        self._sorted: list[float] | None = [] if keep_sorted else None
        # Monotonic queues of (sample number, value): the head is the extreme of the window.
        self._max: deque[tuple[int, float]] | None = deque() if keep_extremes else None
        self._min: deque[tuple[int, float]] | None = deque() if keep_extremes else None
        self._counts: Counter[object] | None = Counter() if keep_counts else None
        # Samples per slot, for a time window that may merge (sums and counts only); None else.
        mergeable = spec.seconds is not None and not (keep_sorted or keep_extremes or keep_counts)
        self._n: list[int] | None = [] if mergeable else None
        self._merge_at = merge_at
        self._grain = spec.seconds / GRAIN_PARTS if spec.seconds is not None else 0.0
        self._slot_start = -math.inf  # ts of the first sample in the newest slot
        self._count = 0  # samples in the window (slots may hold several)
        self.total: float = 0
        self.last: float | None = None
        self.reserved: int = 0
        self._version = 0  # bumped by every add and drop: what a cached statistic was read at
        self._cached: dict[str, tuple[int, float | None]] = {}
        # ``time_until_at_most``'s last answer as an absolute time, with what it was computed from:
        # (version, reserved, level, resume time or None).
        self._resume: tuple[int, int, float, float | None] | None = None

    # -- updates ---------------------------------------------------------------------------
    def add(self, ts: float, value: float) -> None:
        """Append a sample (samples arrive in non-decreasing ``ts`` order per window).

        Samples a time window no longer holds at ``ts`` leave first: without that, a window that
        is fed but never read (a meter that records and never decides) would keep every sample.
        """
        head = self._head
        if (
            self.seconds is not None
            and head < len(self._ts)
            and self._ts[head] + self.seconds <= ts
        ):
            self.expire(ts)
        self._version += 1
        self._count += 1
        self.total += value
        self.last = value
        n = self._n
        if n is not None:
            if (
                len(n) - self._head >= self._merge_at
                and -self._grain < ts - self._slot_start < self._grain
            ):
                if ts > self._ts[-1]:  # the slot leaves with its newest sample (threads may
                    self._ts[-1] = ts  # feed a window a few microseconds out of order)
                self._values[-1] += value
                self._cum[-1] = self._dropped_sum + self.total
                n[-1] += 1
                return
            n.append(1)
            self._slot_start = ts
        self._ts.append(ts)
        self._values.append(value)
        self._cum.append(self._dropped_sum + self.total)
        if self._sorted is not None:
            insort(self._sorted, value)
        if self._max is not None and self._min is not None:
            number = self._dropped + len(self._ts) - self._head - 1
            mx = self._max
            while mx and mx[-1][1] <= value:
                mx.pop()
            mx.append((number, value))
            mn = self._min
            while mn and mn[-1][1] >= value:
                mn.pop()
            mn.append((number, value))
        if self.count_limit is not None and len(self._ts) - self._head > self.count_limit:
            self._drop_oldest()

    def add_key(self, ts: float, key: object) -> None:
        """Append a keyed sample (value 1) for multiplicity queries: repeated prompt hashes."""
        head = self._head
        if (
            self.seconds is not None
            and head < len(self._ts)
            and self._ts[head] + self.seconds <= ts
        ):
            self.expire(ts)
        self._version += 1
        self._count += 1
        if self._n is not None:
            self._n.append(1)  # keyed samples are never merged
        self._ts.append(ts)
        self._values.append(key)
        self._cum.append(0)
        if self._counts is not None:
            self._counts[key] += 1
        self.total += 1
        if self.count_limit is not None and len(self._ts) - self._head > self.count_limit:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        head = self._head
        value = self._values[head]
        number = self._dropped
        self._dropped += 1
        self._version += 1
        self._head = head + 1
        self._count -= 1 if self._n is None else self._n[head]
        if self._counts is not None:
            self.total -= 1
            remaining = self._counts[value] - 1
            if remaining:
                self._counts[value] = remaining
            else:
                del self._counts[value]
        else:
            self.total -= value
            self._dropped_sum += value
            if self._sorted is not None:
                del self._sorted[bisect_left(self._sorted, value)]
            if self._max is not None and self._max[0][0] == number:
                self._max.popleft()
            if self._min is not None and self._min[0][0] == number:
                self._min.popleft()
        if self._head > 512 and self._head * 2 > len(self._ts):
            self._compact()

    def _compact(self) -> None:
        head = self._head
        del self._ts[:head]
        del self._values[:head]
        del self._cum[:head]
        if self._n is not None:
            del self._n[:head]
        self._head = 0

    def expire(self, now: float) -> None:
        """Drop samples older than the time window: a sample leaves at exactly ``ts + seconds``
        (a merged slot, see the module docstring, with its newest sample)."""
        seconds = self.seconds
        if seconds is None:
            return
        ts = self._ts
        head = self._head
        if head < len(ts) and ts[head] + seconds > now:
            return  # the oldest sample stays: nothing leaves
        while self._head < len(ts) and ts[self._head] + seconds <= now:
            self._drop_oldest()
        if self._head == len(ts) and ts:
            self._compact()
            if self._counts is None:
                self.total = 0  # reset float drift when empty

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples in the window (as of the last update or read)."""
        return self._count

    def samples(self) -> list[tuple[float, Any]]:
        """The window's samples, oldest first (a merged slot: its newest ts and its sum)."""
        head = self._head
        return list(zip(self._ts[head:], self._values[head:], strict=True))

    def stat(self, name: str, now: float) -> float | None:
        """The statistic ``name`` over the window at ``now``; None when the window is empty."""
        self.expire(now)
        n = self._count
        if name == "sum":
            return self.total
        if name == "count":
            return n
        if name == "repeats":
            return max(self._counts.values()) if self._counts else 0
        if name == "distinct":
            return len(self._counts) if self._counts is not None else 0
        if n == 0:
            return None
        if name == "mean":
            return self.total / n
        if name == "last":
            return self.last
        if name == "max":
            return self._max[0][1] if self._max else None
        if name == "min":
            return self._min[0][1] if self._min else None
        if name == "rate":
            return self.total / self._span_s(now)
        q = QUANTILES.get(name)
        if q is not None and self._sorted is not None:
            return quantile_of_sorted(self._sorted, q)
        if name == "anomaly" and self._sorted is not None:
            return robust_z(self._sorted, self.last)
        raise ValueError(f"unknown statistic {name!r}")

    def reader(self, name: str) -> Callable[[float], float | None]:
        """A function of ``now`` equal to ``stat(name, now)``, with the dispatch done once.

        The engine binds one per condition and scope key; statistics that cost more than O(1) to
        read (``repeats``, ``anomaly``) are cached until the window's samples change.
        """
        q = QUANTILES.get(name)
        if q is not None and self._sorted is not None:
            return partial(self._quantile, q)
        if name not in _READERS or (name == "anomaly" and self._sorted is None):
            return partial(self.stat, name)
        return getattr(self, f"_read_{name}")  # type: ignore[no-any-return]

    # The readers below run for every rule on every decide. Each starts with ``expire``'s own
    # "nothing leaves" test inlined (the common case: the oldest sample is still inside the window)
    # and calls ``expire`` only when something may leave; a count window never expires.

    def _read_sum(self, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        return self.total

    def _read_count(self, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        return self._count

    def _read_repeats(self, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        counts = self._counts
        if not counts:
            return 0
        hit = self._cached.get("repeats")
        if hit is not None and hit[0] == self._version:
            return hit[1]
        value = max(counts.values())
        self._cached["repeats"] = (self._version, value)
        return value

    def _read_distinct(self, now: float) -> float | None:
        self.expire(now)
        return len(self._counts) if self._counts is not None else 0

    def _read_mean(self, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        n = self._count
        return self.total / n if n else None

    def _read_last(self, now: float) -> float | None:
        self.expire(now)
        return self.last if len(self._ts) > self._head else None

    def _read_max(self, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        if len(self._ts) == self._head:
            return None
        return self._max[0][1] if self._max else None

    def _read_min(self, now: float) -> float | None:
        self.expire(now)
        if len(self._ts) == self._head:
            return None
        return self._min[0][1] if self._min else None

    def _read_rate(self, now: float) -> float | None:
        self.expire(now)
        if len(self._ts) == self._head:
            return None
        return self.total / self._span_s(now)

    def _quantile(self, q: float, now: float) -> float | None:
        seconds = self.seconds
        if seconds is not None:
            ts, head = self._ts, self._head
            if not (head < len(ts) and ts[head] + seconds > now):
                self.expire(now)
        if len(self._ts) == self._head:
            return None
        return quantile_of_sorted(self._sorted, q)  # type: ignore[arg-type]  # bound only when kept

    def _read_anomaly(self, now: float) -> float | None:
        self.expire(now)
        if len(self._ts) == self._head:
            return None
        hit = self._cached.get("anomaly")
        if hit is not None and hit[0] == self._version:
            return hit[1]
        value = robust_z(self._sorted, self.last)  # type: ignore[arg-type]  # bound only when kept
        self._cached["anomaly"] = (self._version, value)
        return value

    def _span_s(self, now: float) -> float:
        if self.seconds is not None:
            return self.seconds
        return max(now - self._ts[self._head], 1e-9)

    def time_until_at_most(self, level: float, now: float) -> float | None:
        """Seconds from ``now`` until the window's sum (plus reservations) drops to ``level``.

        Exact for time windows: samples leave at ``ts + seconds``, oldest first, so the answer is
        the leaving time of the first sample whose running sum covers the excess (a binary search
        over the running sums). None when waiting cannot help (count windows, or reservations
        that outweigh everything the window will drop).

        A budget pause in force asks on every decide, mostly with nothing changed but the clock;
        the leaving time found is kept as an absolute time with the version, reservations and
        level it was found for, so then only the wait from ``now`` is computed.
        """
        seconds = self.seconds
        if seconds is None:
            excess = self.total + self.reserved - level
            return 0.0 if excess <= 0 else None
        ts, head = self._ts, self._head
        if not (head < len(ts) and ts[head] + seconds > now):
            self.expire(now)
        excess = self.total + self.reserved - level
        if excess <= 0:
            return 0.0
        cached = self._resume
        if (
            cached is not None
            and cached[0] == self._version
            and cached[1] == self.reserved
            and cached[2] == level
        ):
            resume = cached[3]
        else:
            # Dropping samples head..i removes _cum[i] - _dropped_sum; find the first i that
            # covers it.
            i = bisect_left(self._cum, self._dropped_sum + excess, self._head)
            resume = self._ts[i] + seconds if i < len(self._ts) else None
            self._resume = (self._version, self.reserved, level, resume)
        if resume is None:
            return None
        wait = max(0.0, resume - now)
        while now + wait < resume:  # float rounding must never resume a hair early
            wait = math.nextafter(wait, math.inf)
        return wait


# Statistics with a ``_read_NAME`` method (the quantiles share ``_quantile``).
_READERS = frozenset(
    ("sum", "count", "repeats", "distinct", "mean", "last", "max", "min", "rate", "anomaly")
)
