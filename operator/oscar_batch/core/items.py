"""Sets of manifest lines as sorted, disjoint intervals, and their compact text form in status. Pure.

Lines are 1-based, as the `start`/`end` of an invocation; an interval is `[start, end)`. In status a set is
written the way Kubernetes Indexed Jobs write `completedIndexes`, with inclusive runs: `1-40000,40101-52000`.
A scattered set (every third line, say) would grow with the batch, so past RUNS_BUDGET characters a
zlib-compressed bitmap `z:<base64>` (bit i, least significant bit of each byte first, is line i) is written
instead when it is shorter: status stays small for millions of lines whatever the pattern.
"""
from __future__ import annotations

import base64
import bisect
import re
import zlib
from collections.abc import Iterable, Iterator

RUNS_BUDGET = 1024
BITMAP_PREFIX = "z:"
MAX_BITMAP_BYTES = 1 << 21   # 16,777,216 lines: a bound on what decoding inflates
ONES = re.compile("1+")

Span = tuple[int, int]   # lines [start, end): a range of the manifest


def overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class Lines:
    """A set of lines kept as disjoint, non-adjacent intervals, sorted: memory grows with the runs, not the lines."""

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for start, end in intervals:
            self.add(start, end)

    def __len__(self) -> int:
        """How many lines."""
        return self._count

    @property
    def runs(self) -> int:
        """How many intervals."""
        return len(self._starts)

    @property
    def stop(self) -> int:
        """The end of the last interval (0 when empty)."""
        return self._ends[-1] if self._ends else 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lines) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Lines({encode(self)!r})"

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        if not self._ends or start > self._ends[-1]:
            # Past every interval (decoding, restoring: intervals come in order): nothing to merge.
            self._starts.append(start)
            self._ends.append(end)
            self._count += end - start
            return
        # Every interval that overlaps or touches [start, end) merges into it.
        first = bisect.bisect_left(self._ends, start)
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
            self._count -= sum(self._ends[i] - self._starts[i] for i in range(first, last))
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]
        self._count += end - start

    def remove(self, start: int, end: int) -> None:
        if end <= start:
            return
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._starts, end)
        if first >= last:
            return
        kept_starts, kept_ends = [], []
        if self._starts[first] < start:
            kept_starts.append(self._starts[first])
            kept_ends.append(start)
        if self._ends[last - 1] > end:
            kept_starts.append(end)
            kept_ends.append(self._ends[last - 1])
        self._count -= sum(self._ends[i] - self._starts[i] for i in range(first, last))
        self._count += sum(e - s for s, e in zip(kept_starts, kept_ends, strict=True))
        self._starts[first:last] = kept_starts
        self._ends[first:last] = kept_ends

    def covers(self, start: int, end: int) -> bool:
        """Whether every line of [start, end) is in the set."""
        position = bisect.bisect_right(self._starts, start) - 1
        return position >= 0 and self._ends[position] >= end

    def overlaps(self, start: int, end: int) -> bool:
        """Whether some line of [start, end) is in the set."""
        position = bisect.bisect_right(self._ends, start)
        return position < len(self._starts) and self._starts[position] < end

    def run_end(self, line: int) -> int:
        """The end of the interval holding `line`, or `line` itself when the set does not hold it."""
        position = bisect.bisect_right(self._starts, line) - 1
        if position >= 0 and self._ends[position] > line:
            return self._ends[position]
        return line

    def first_missing(self, start: int, end: int, *others: Lines) -> int | None:
        """The first line of [start, end) that neither this set nor any of `others` holds."""
        sets = (self, *others)
        line = start
        while line < end:
            reach = max(lines.run_end(line) for lines in sets)
            if reach == line:
                return line
            line = reach
        return None

    def lines(self) -> Iterator[int]:
        for start, end in self:
            yield from range(start, end)


def encode(lines: Lines) -> str:
    """Inclusive runs `1-40000,40101`; the compressed bitmap when that is long and the bitmap shorter."""
    last = lines.stop - 1
    bitmap = None
    if last < MAX_BITMAP_BYTES * 8 and 2 * lines.runs - 1 > RUNS_BUDGET:
        # The runs cannot fit the budget (each takes a number and a comma at least): no need to write them out
        # when the bitmap is shorter than that already, as it is for scattered lines.
        bitmap = _bitmap(lines, last)
        if len(bitmap) < 2 * lines.runs - 1:
            return bitmap
    text = ",".join(str(start) if end == start + 1 else f"{start}-{end - 1}" for start, end in lines)
    if len(text) > RUNS_BUDGET and last < MAX_BITMAP_BYTES * 8:
        bitmap = bitmap or _bitmap(lines, last)
        if len(bitmap) < len(text):
            return bitmap
    return text


def _bitmap(lines: Lines, last: int) -> str:
    # Bit i of the little-endian integer is line i: built from one digit string, at C speed per line and
    # Python speed per run (a per-line loop took a second of the event loop for 1,000,000 scattered lines).
    digits: list[str] = []
    line = 0
    for start, end in lines:
        digits += ("0" * (start - line), "1" * (end - start))
        line = end
    value = int("".join(digits)[::-1] or "0", 2)
    bits = value.to_bytes(last // 8 + 1, "little")
    return BITMAP_PREFIX + base64.b64encode(zlib.compress(bits, 9)).decode("ascii")


def decode(text: str | None) -> Lines:
    """Inverse of `encode`; raises ValueError on anything else."""
    text = (text or "").strip()
    if text.startswith(BITMAP_PREFIX):
        return _from_bitmap(text[len(BITMAP_PREFIX):])
    result = Lines()
    for run in text.split(","):
        run = run.strip()
        if not run:
            continue
        first, separator, last = run.partition("-")
        low = int(first)
        high = int(last) if separator else low
        if low < 1 or high < low:
            raise ValueError(f"bad line run {run!r}")
        result.add(low, high + 1)
    return result


def _from_bitmap(encoded: str) -> Lines:
    try:
        inflater = zlib.decompressobj()
        bits = inflater.decompress(base64.b64decode(encoded, validate=True), MAX_BITMAP_BYTES)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"bad line bitmap: {error}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("bad line bitmap: truncated or larger than allowed")
    # Runs of ones in the bitmap's digits, line 0 first (the inverse of `_bitmap`).
    digits = f"{int.from_bytes(bits, 'little'):b}"[::-1]
    result = Lines((run.start(), run.end()) for run in ONES.finditer(digits))
    if result.overlaps(0, 1):
        raise ValueError("bad line bitmap: line 0")
    return result
