"""What skipping costs the operator: N outputs through `OutputIndex` (added, frozen, then N inputs looked up,
half of them done), its time and the process's peak RSS growth. Not part of `make bench`: a figure for
docs/ARCHITECTURE.md ("Skipping what is done").

    .venv/bin/python -m benchmarks.output_index 200000 [--newer-than-input]
"""
from __future__ import annotations

import argparse
import datetime
import resource
import time

from oscar_batch.core.outputs import OutputIndex, OutputsSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=int)
    parser.add_argument("--newer-than-input", action="store_true")
    args = parser.parse_args()
    count = args.outputs
    written = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    index = OutputIndex(OutputsSpec(bucket="b", prefix="o/", newer_than_input=args.newer_than_input))
    for number in range(count):
        index.add(f"day-{number % 365:03d}/frame-{number:09d}.jpg.json", written)
    added = time.perf_counter()
    index.freeze()
    frozen = time.perf_counter()
    done = sum(index.done(f"day-{number % 365:03d}/frame-{number:09d}.jpg") for number in range(0, 2 * count, 2))
    looked_up = time.perf_counter()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{count} outputs: add {added - began:.2f} s, freeze {frozen - added:.2f} s, {count} lookups "
          f"{looked_up - frozen:.2f} s ({done} done); index {len(index) * 16 / 1e6:.1f} MB, peak RSS +{grown:.1f} MiB")


if __name__ == "__main__":
    main()
