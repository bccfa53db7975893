"""How many manifest lines each range gets. Pure.

Ranges are carved on demand from the lines never handed out (the frontier onwards), in the factoring family
of loop schedulers (Hummel, Schonberg and Flynn, CACM 1992; guided self-scheduling):

- the first wave gives every slot one range, together FIRST_WAVE_SHARE of the batch: most of the work starts
  at once and each slot pays its start-up once (on fewer than FIRST_WAVE_RANGES slots, ranges as if there
  were that many);
- the second wave splits what the first left evenly among the slots: the slots that finish their first range
  early take these, so the slots finish together (with uniform items each slot pays one more start-up, and
  no more: halving what is left again and again, as factoring does, made 2–3 more per slot there);
- no range is smaller than what keeps the start-up a STARTUP_SHARE of its run time, from the start-up and
  per-item times measured on this batch's own Jobs.

`itemsPerInvocation` set by the user means fixed ranges of that size. Every carve is recorded (a `CarveLog`,
kept in status before the ranges it made are invoked) so that a restarted operator finds the same ranges, and
with them the same Job names: nothing is invoked twice.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
from collections.abc import Iterator

# Uniform items finish the first wave together, so what it leaves costs every slot one more start-up; with
# varied items it is what evens out the finish. 0.9 and 0.25 are the makespan benchmark's best trade-off
# (docs/benchmarks.md): 0.8 and 0.1 left tail ranges too few and too large to share out.
FIRST_WAVE_SHARE = 0.9
# A batch that starts on few slots still cuts its first wave in at least this many ranges: slots that come
# free later (another batch ends, a node joins) then find work, instead of one range holding 90% of the batch.
FIRST_WAVE_RANGES = 8
STARTUP_SHARE = 0.25
SAMPLES_KEPT = 200   # the most recent ranges the estimates come from


def carve_sizes(*, remaining: int, free: int, slots: int, first_wave: bool, items: int, min_items: int,
                fixed: int = 0) -> list[int]:
    """Sizes of up to `free` new ranges from the `remaining` lines not handed out yet. One size per call, so
    that the carve log grows by one run per dispatch pass."""
    slots, free = max(slots, 1), max(free, 0)
    first_size = math.ceil(FIRST_WAVE_SHARE * items / max(slots, FIRST_WAVE_RANGES))
    if fixed:
        size = fixed
    elif first_wave:
        size = first_size
    else:
        left_by_first_wave = items - min(items, first_size * max(slots, FIRST_WAVE_RANGES))
        size = max(min_items, math.ceil(left_by_first_wave / slots))
    size = max(1, size)
    sizes: list[int] = []
    while len(sizes) < free and remaining > 0:
        sizes.append(min(size, remaining))
        remaining -= size
    return sizes


def next_carve(carves: CarveLog, *, free: int, slots: int, timings: Timings, fixed: int = 0) -> list[int]:
    """Sizes of the ranges to carve at the frontier for `free` slots, `slots` being the batch's parallelism."""
    carved = carves.frontier - 1
    return carve_sizes(remaining=carves.items - carved, free=free, slots=slots, items=carves.items,
                       first_wave=carved < FIRST_WAVE_SHARE * carves.items,
                       min_items=min_items(timings.startup, timings.per_item), fixed=fixed)


def min_items(startup: float | None, per_item: float | None) -> int:
    """The fewest lines a range may have so that start-up stays a STARTUP_SHARE of its run."""
    if not startup or not per_item:
        return 1
    return max(1, math.ceil((1 - STARTUP_SHARE) / STARTUP_SHARE * startup / per_item))


@dataclasses.dataclass
class Timings:
    """Start-up and per-item seconds, measured on this batch's finished ranges: a range of n lines that took d
    seconds from OSCAR accepting it to its Job completing gives d = start-up + n × per-item. Ranges of different
    sizes (the shrinking ones after the first wave) separate the two by least squares; until then, the time
    to the pod being ready is the start-up (the service's own start inside its container, e.g. loading a
    model, still counts as work). The recent SAMPLES_KEPT ranges only: the batch re-sizes as it learns."""
    samples: list[tuple[int, float]] = dataclasses.field(default_factory=list)   # (lines, seconds)
    readiness: list[float] = dataclasses.field(default_factory=list)             # accepted → pod ready
    # (start-up, per item) as of the last sample: every dispatch and status patch asks, few ranges end between.
    _estimate: tuple[float | None, float | None] | None = dataclasses.field(default=None, init=False, repr=False,
                                                                             compare=False)

    def record(self, *, accepted: float, ready: float | None, finished: float, lines: int) -> None:
        if finished < accepted or lines < 1:
            return
        self._keep(self.samples, (lines, finished - accepted))
        if ready is not None and accepted <= ready <= finished:
            self._keep(self.readiness, ready - accepted)
        self._estimate = None

    @property
    def startup(self) -> float | None:
        return self._estimated()[0]

    @property
    def per_item(self) -> float | None:
        return self._estimated()[1]

    def _estimated(self) -> tuple[float | None, float | None]:
        if self._estimate is None:
            fitted = self._fit()
            if fitted is not None:
                self._estimate = fitted
            elif not self.samples:
                self._estimate = (statistics.median(self.readiness) if self.readiness else None, None)
            else:
                startup = statistics.median(self.readiness) if self.readiness else 0.0
                self._estimate = (startup, statistics.median(max(seconds - startup, 0.0) / lines
                                                             for lines, seconds in self.samples))
        return self._estimate

    def _fit(self) -> tuple[float, float] | None:
        """(start-up, per item) by least squares, when the sizes differ enough to tell them apart."""
        if len({lines for lines, _ in self.samples}) < 2:
            return None
        sizes = [float(lines) for lines, _ in self.samples]
        durations = [seconds for _, seconds in self.samples]
        mean_size, mean_duration = statistics.fmean(sizes), statistics.fmean(durations)
        spread = sum((size - mean_size) ** 2 for size in sizes)
        if spread < 1e-9:
            return None
        per_item = sum((size - mean_size) * (duration - mean_duration)
                       for size, duration in zip(sizes, durations, strict=True)) / spread
        startup = mean_duration - per_item * mean_size
        if per_item <= 0 or startup < 0:
            return None
        return startup, per_item

    @staticmethod
    def _keep(samples: list, value: object) -> None:
        samples.append(value)
        del samples[:-SAMPLES_KEPT]


@dataclasses.dataclass(frozen=True)
class Carve:
    first: int    # first line of the first range
    count: int    # ranges of `size` lines, one after another
    size: int


class CarveLog:
    """Every range carved from the frontier, as runs of equal sizes: `1:8x100,801:8x10`. The last range
    ends at the batch's last line at the latest."""

    def __init__(self, items: int, carves: list[Carve] | None = None) -> None:
        self.items = items
        self.carves: list[Carve] = list(carves or [])

    @property
    def frontier(self) -> int:
        """The first line no range holds."""
        if not self.carves:
            return 1
        last = self.carves[-1]
        return min(last.first + last.count * last.size, self.items + 1)

    def carve(self, sizes: list[int]) -> list[tuple[int, int]]:
        """Append ranges of these sizes at the frontier; returns their [start, end)."""
        made = []
        for size in sizes:
            start = self.frontier
            if start > self.items:
                break
            last = self.carves[-1] if self.carves else None
            if last is not None and last.size == size and last.first + last.count * size == start:
                self.carves[-1] = dataclasses.replace(last, count=last.count + 1)
            else:
                self.carves.append(Carve(start, 1, size))
            made.append((start, min(start + size, self.items + 1)))
        return made

    def ranges_from(self, line: int) -> Iterator[tuple[int, int]]:
        """The carved ranges, in order, from the one holding `line`."""
        position = max(bisect.bisect_right([carve.first for carve in self.carves], line) - 1, 0)
        for carve in self.carves[position:]:
            skip = max((line - carve.first) // carve.size, 0)
            for index in range(skip, carve.count):
                start = carve.first + index * carve.size
                if start > self.items:
                    return
                yield start, min(start + carve.size, self.items + 1)

    def encode(self) -> str:
        return ",".join(f"{carve.first}:{carve.count}x{carve.size}" for carve in self.carves)

    @classmethod
    def decode(cls, items: int, text: str | None) -> CarveLog:
        """Inverse of `encode`; raises ValueError on anything else, e.g. runs that do not follow each other."""
        log = cls(items)
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                first, rest = part.split(":")
                count, size = rest.split("x")
                carve = Carve(int(first), int(count), int(size))
            except ValueError:
                raise ValueError(f"bad carve {part!r}") from None
            if carve.first != log.frontier or carve.count < 1 or carve.size < 1:
                raise ValueError(f"carve {part!r} does not follow line {log.frontier}")
            log.carves.append(carve)
        return log


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a batch would do on `slots` slots from the start, for a dry run."""
    sizes: list[int]                 # the ranges, in the order they would be carved
    seconds: float | None            # the makespan, when start-up and per-item times are known

    def describe(self) -> str:
        runs: list[tuple[int, int]] = []
        for size in self.sizes:
            if runs and runs[-1][1] == size:
                runs[-1] = (runs[-1][0] + 1, size)
            else:
                runs.append((1, size))
        return ", ".join(f"{count} × {size}" for count, size in runs)


def estimate(*, items: int, slots: int, timings: Timings, fixed: int = 0) -> Estimate:
    """The ranges carved as the operator carves them while every slot stays free, and how long the slots take
    working through them (each slot takes the next range as its last one ends)."""
    slots = max(slots, 1)
    floor = min_items(timings.startup, timings.per_item)
    sizes: list[int] = []
    while sum(sizes) < items:
        carved = sum(sizes)
        more = carve_sizes(remaining=items - carved, free=slots, slots=slots, items=items,
                           first_wave=carved < FIRST_WAVE_SHARE * items, min_items=floor, fixed=fixed)
        if not more:
            break
        sizes += more
    if timings.startup is None or timings.per_item is None:
        return Estimate(sizes, None)
    free_at = [0.0] * slots
    for size in sizes:
        earliest = min(range(slots), key=free_at.__getitem__)
        free_at[earliest] += timings.startup + timings.per_item * size
    return Estimate(sizes, max(free_at) if sizes else 0.0)
