"""A million inputs: listing a bucket of 1,000,000 keys into the manifest, against the real tier's MinIO, and the
size of status for 1,000,000 items whatever fails.

Listing (needs the real tier's MinIO, `make real-bin`):
- seed: a bucket of N empty objects (`input/<i // 1000>/frame-<i>.jpg`) put through the S3 API in snowball
  archives (minio-py's `upload_snowball_objects`: one PUT of a tar that MinIO extracts into its objects, each
  written as a PUT of its own would be), SEED_WORKERS archives at a time; timed. The server's data directory is
  kept under ~/.cache/oscar-batch/bench-listing/<N>/, so that a second run starts MinIO on it and skips seeding.
- bare: a fresh process counts the keys minio-py's `list_objects(recursive=True)` yields: keys/s.
- product: a fresh process runs the operator's own listing as a batch does (`BatchController._manifest` with
  production timing: ownership checks, the Listing status, the listing thread writing the spooled manifest, its
  PUT, and the progress patches every status interval), against a stand-in for the API server that records each
  status patch: keys/s and its ratio to bare, peak RSS (VmHWM) and the longest wait for a patch showing how
  far the listing got.
The two alternate, `--rounds` times each; the figures are medians.

Status (pure, no server): the status patch for 1,000,000 settled items when every other item, 10% at random, one
in a thousand or half of them at random failed, as the operator sends it (line sets in status, or in the results
object with `status.itemsAt` saying where): its size, the results object's, and the time to encode it.

Run: `.venv/bin/python -m benchmarks.listing` (`--help` for sizes); `make bench` runs the defaults and writes the
"A million inputs" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import itertools
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Sequence

from minio.commonconfig import SnowballObject

from benchmarks.listing_child import BUCKET, MANIFEST_KEY, PREFIX, Listed
from benchmarks.report import ROOT, machine, replace_section, revision
from oscar_batch.core import results, status
from oscar_batch.core.chunking import CarveLog
from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import FailedItem, RangeBook
from oscar_batch.core.spec import MAX_KEY_LENGTH

sys.path.insert(0, str(ROOT / "tests" / "real"))
import realplane  # noqa: E402  (the real tier's MinIO, started as its tests start it)

DOCS_HEADING = "## A million inputs"
CACHE = (pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
         / "oscar-batch" / "bench-listing")
LAYOUT = "input/<i // 1000>/frame-<i>.jpg, empty, v1"   # a change here must not reuse an old cache
SNOWBALL_OBJECTS = 10_000
SEED_WORKERS = 4

# The issue's size and targets.
ISSUE_KEYS = 1_000_000
ROUNDS = 3
TARGET_RATIO = 0.90
TARGET_RSS_MB = 150.0
TARGET_PROGRESS_SECONDS = 10.0
TARGET_STATUS_BYTES = 256 * 1024


def key(number: int) -> str:
    return f"{PREFIX}{number // 1000:04d}/frame-{number:07d}.jpg"


# ---- the server and its data ------------------------------------------------------------------------------

@dataclasses.dataclass
class Seeded:
    keys: int
    seconds: float          # how long seeding took when it was done
    cached: bool            # this run found it done


def seeded_minio(count: int, cache: pathlib.Path) -> tuple[realplane.Minio, Seeded]:
    """MinIO on the cached data directory for `count` keys, seeding it first when there is none."""
    directory = cache / str(count)
    marker = directory / "seeded.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("layout") == LAYOUT:
            server = realplane.start_minio(directory, credentials=(done["access_key"], done["secret_key"]))
            return server, Seeded(count, done["seconds"], cached=True)
    shutil.rmtree(directory, ignore_errors=True)
    server = realplane.start_minio(directory)
    try:
        seconds = seed(server, count)
    except BaseException:
        server.process.stop()
        raise
    marker.write_text(json.dumps({"layout": LAYOUT, "keys": count, "seconds": seconds,
                                  "access_key": server.access_key, "secret_key": server.secret_key}))
    return server, Seeded(count, seconds, cached=False)


def seed(server: realplane.Minio, count: int) -> float:
    """`count` empty objects through the S3 API, in snowball archives of SNOWBALL_OBJECTS, SEED_WORKERS at once."""
    began = time.perf_counter()
    server.client().make_bucket(BUCKET)

    def archive(first: int) -> None:
        server.client().upload_snowball_objects(BUCKET, [
            SnowballObject(key(number), data=io.BytesIO(b""), length=0)
            for number in range(first, min(first + SNOWBALL_OBJECTS, count + 1))])

    with concurrent.futures.ThreadPoolExecutor(SEED_WORKERS) as pool:
        list(pool.map(archive, range(1, count + 1, SNOWBALL_OBJECTS)))
    seconds = time.perf_counter() - began
    print(f"seeded {count:,} objects in {seconds:.0f} s ({count / seconds:,.0f}/s)", file=sys.stderr)
    return seconds


# ---- the two listings, each in a process of its own ---------------------------------------------------------

def list_in_a_process(kind: str, server: realplane.Minio) -> Listed:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.listing_child", kind, server.url, server.access_key, server.secret_key],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"the {kind} listing failed:\n{completed.stderr[-4000:]}")
    return Listed(**json.loads(completed.stdout.splitlines()[-1]))


# ---- status for a million items ------------------------------------------------------------------------------

@dataclasses.dataclass
class StatusSize:
    pattern: str
    failed: int
    completed_chars: int        # completedItems as encoded
    failed_chars: int           # failedItems as encoded
    spilled: bool               # the line sets went to the results object
    status_bytes: int           # the final status as the operator patches it (JSON)
    results_bytes: int          # the results object written while the batch runs (0: none needed)
    encode_seconds: float       # status.progress: both sets encoded, the first failed items found
    book_mb: float              # the batch's item bookkeeping (RangeBook), every failed item held


def failure_patterns(total: int) -> dict[str, list[int]]:
    chance = random.Random(19)
    return {"every other item": list(range(2, total + 1, 2)),
            "10% at random": sorted(chance.sample(range(1, total + 1), total // 10)),
            "one in a thousand": list(range(1000, total + 1, 1000)),
            "half at random (worst case)": sorted(chance.sample(range(1, total + 1), total // 2))}


def status_size(pattern: str, failing: list[int], total: int, key_length: int = 60) -> StatusSize:
    """The final status of `total` settled items, `failing` failed, as `_finish` patches it. Each failed item is
    held with its key and Job, as in a live run (the first 50, which status names, with keys of `key_length`
    characters)."""
    # Carved as for 500 slots: a first wave of 90% of the lines, a second of the rest.
    first_wave = total * 9 // 10 // 500
    tracemalloc.start()
    book = RangeBook(total, 2, carves=CarveLog.decode(
        total, f"1:500x{first_wave},{500 * first_wave + 1}:500x{(total - 500 * first_wave) // 500}"))
    bounds = [0, *failing, total + 1]
    book.restore(Lines((before + 1, after) for before, after in itertools.pairwise(bounds)),
                 Lines((line, line + 1) for line in failing),
                 [FailedItem(line, f"fish-0b5a9c1e-l{line}-{line + 1}-a3", "Error (exit code 1)",
                             f"input/{line:09d}/".ljust((key_length if named < 50 else 60) - 4, "x") + ".jpg")
                  for named, line in enumerate(failing)])
    book_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    began = time.perf_counter()
    patch = status.progress(book, 0, {"mode": "Adaptive", "startupSeconds": 12.5, "secondsPerItem": 0.8,
                                      "minItems": 16})
    encoded = time.perf_counter() - began
    completed_chars, failed_chars = len(patch["completedItems"]), len(patch["failedItems"])
    where = f"s3://{BUCKET}/{MANIFEST_KEY}.results.json"
    spilled = not status.line_sets_fit(patch)
    document = results.line_sets(book, batch="default/million", uid=str(uuid.UUID(int=19)), service="fish",
                                 phase=status.FAILED, manifest=f"s3://{BUCKET}/{MANIFEST_KEY}",
                                 succeeded=patch["completedItems"], failed=patch["failedItems"]) if spilled else None
    patch = status.line_sets_at(patch, where) if spilled else status.line_sets_inline(patch)
    phase, reason, message = status.verdict(book, 0)
    final = {"phase": phase, "message": message, **patch, "results": where, "manifest": f"s3://{BUCKET}/{MANIFEST_KEY}",
             "startTime": "2026-12-01T00:00:00Z", "completionTime": "2026-12-01T05:00:00Z", "observedGeneration": 1,
             "reason": reason, "pinned": {"service": "fish", "bucket": BUCKET, "prefix": PREFIX, "include": ["*.jpg"],
                                          "exclude": [], "manifestKey": MANIFEST_KEY},
             "conditions": [status.condition(kind, kind == "Failed", reason, message, "2026-12-01T05:00:00Z", 1)
                            for kind in ("Progressing", "Complete", "Failed")]}
    return StatusSize(pattern, len(failing), completed_chars, failed_chars, spilled, len(json.dumps(final)),
                      len(json.dumps(document, separators=(",", ":"))) if document else 0, encoded,
                      book_bytes / 2**20)


def status_sizes(total: int) -> list[StatusSize]:
    sizes = [status_size(pattern, failing, total) for pattern, failing in failure_patterns(total).items()]
    worst = failure_patterns(total)["half at random (worst case)"]
    sizes.append(status_size(f"half at random, 50 named with {MAX_KEY_LENGTH:,}-character keys", worst, total,
                             key_length=MAX_KEY_LENGTH))
    return sizes


# ---- report ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Report:
    seeded: Seeded | None
    bare: list[Listed]
    product: list[Listed]
    sizes: list[StatusSize]
    total: int

    def median(self, listings: list[Listed], value: str) -> float:
        return statistics.median(getattr(listing, value) for listing in listings)

    @property
    def ratio(self) -> float:
        return self.median(self.product, "rate") / self.median(self.bare, "rate")

    @property
    def longest_gap(self) -> float:
        return max(gap for listing in self.product for gap in listing.progress_gaps)


def listing_table(report: Report) -> list[str]:
    lines = ["| listing | round | keys | seconds | keys/s | RSS before MiB | peak RSS MiB | progress patches "
             "| longest gap s |", "|---|---|---|---|---|---|---|---|---|"]
    for listings in (report.bare, report.product):
        for round_number, listing in enumerate(listings, 1):
            shown = (f"{len(listing.progress_gaps)} | {max(listing.progress_gaps):.2f}" if listing.progress_gaps
                     else "– | –")
            lines.append(f"| {listing.kind} | {round_number} | {listing.keys:,} | {listing.seconds:.1f} | "
                         f"{listing.rate:,.0f} | {listing.rss_before_mb:.0f} | {listing.rss_mb:.0f} | {shown} |")
    return lines


def status_table(sizes: Sequence[StatusSize], total: int) -> list[str]:
    lines = [f"| failed, of {total:,} | items | completedItems chars | failedItems chars | in status? "
             "| status bytes | results object bytes | encoding s | bookkeeping MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {size.pattern} | {size.failed:,} | {size.completed_chars:,} | {size.failed_chars:,} | "
              f"{'no: itemsAt' if size.spilled else 'yes'} | {size.status_bytes:,} | "
              f"{size.results_bytes:,} | {size.encode_seconds:.2f} | {size.book_mb:.0f} |" for size in sizes]
    return lines


def targets(report: Report) -> list[str]:
    lines = []
    if report.bare and report.product:
        rss = max(listing.rss_mb for listing in report.product)
        keys = report.product[0].keys
        lines += [
            f"- listing {keys:,} keys into the manifest at ≥ {TARGET_RATIO:.0%} of a bare listing's keys/s: "
            f"{report.ratio:.0%} (medians: {report.median(report.product, 'rate'):,.0f} vs "
            f"{report.median(report.bare, 'rate'):,.0f} keys/s) — "
            f"{'met' if report.ratio >= TARGET_RATIO else 'MISSED'}",
            f"- peak RSS ≤ {TARGET_RSS_MB:.0f} MiB: {rss:.0f} MiB at most — "
            f"{'met' if rss <= TARGET_RSS_MB else 'MISSED'}",
            f"- listing progress in status at least every {TARGET_PROGRESS_SECONDS:.0f} s: the longest wait for a "
            f"patch showing it was {report.longest_gap:.1f} s — "
            f"{'met' if report.longest_gap <= TARGET_PROGRESS_SECONDS else 'MISSED'}"]
    largest = max(size.status_bytes for size in report.sizes)
    lines.append(f"- status ≤ {TARGET_STATUS_BYTES // 1024} KiB for {report.total:,} items under any failure pattern: "
                 f"{largest:,} bytes at most — {'met' if largest <= TARGET_STATUS_BYTES else 'MISSED'}")
    return lines


def write_docs(command: str, took: str, report: Report) -> None:
    seeded = report.seeded
    seeding = ("" if seeded is None else
               f" Seeding {seeded.keys:,} empty objects took {seeded.seconds:.0f} s "
               f"({seeded.keys / seeded.seconds:,.0f} objects/s; snowball archives of {SNOWBALL_OBJECTS:,} "
               f"through the S3 API, {SEED_WORKERS} at once)"
               + ("; this run reused the cached data directory." if seeded.cached else "."))
    replace_section(DOCS_HEADING, [
        DOCS_HEADING, "",
        f"`{command}` (also part of `make bench`), {time.strftime('%Y-%m-%d')}, operator at {revision()}; "
        f"{machine()}; the whole run took {took}. MinIO is the real tier's (one drive, on this machine's disk)."
        f"{seeding} "
        "Each listing runs in a fresh process: *bare* counts what minio-py's `list_objects(recursive=True)` yields; "
        "*product* is a batch's listing as the operator does it (`BatchController._manifest`, production timing: "
        "ownership checks, the listing thread writing the spooled manifest, its PUT, a status patch with "
        "`status.listed` every 2 s) against a stand-in API server that times the patches. \"Longest gap\" is the "
        "longest wait for the next patch showing the listing's progress (or its end).", "",
        *(listing_table(report) if report.bare else ["(listing not measured: no MinIO binary)"]), "",
        f"Status of {report.total:,} settled items by failure pattern (`status.progress` as the operator sends it; "
        "the 50 failed items status names have 60-character keys unless said). Line sets over "
        f"{status.LINE_SETS_BUDGET:,} characters together go to the results object, and `status.itemsAt` says where; "
        "\"results object bytes\" is that document while the batch runs.", "",
        *status_table(report.sizes, report.total), "",
        "Targets of the issue:", "",
        *targets(report)])


def main(argv: Sequence[str] | None = None) -> int:
    summary = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=summary)
    parser.add_argument("--keys", type=int, default=ISSUE_KEYS, help=f"objects to list (default {ISSUE_KEYS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"listings of each kind (default {ROUNDS})")
    parser.add_argument("--items", type=int, default=ISSUE_KEYS,
                        help=f"items of the status sizes (default {ISSUE_KEYS:,})")
    parser.add_argument("--cache", type=pathlib.Path, default=CACHE, help=f"seeded data directories (default {CACHE})")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    report = Report(None, [], [], status_sizes(args.items), args.items)
    if os.access(realplane.BIN_DIR / "minio", os.X_OK):
        server, report.seeded = seeded_minio(args.keys, args.cache)
        try:
            for _ in range(args.rounds):
                report.bare.append(list_in_a_process("bare", server))
                report.product.append(list_in_a_process("product", server))
                print(f"round {len(report.bare)}: bare {report.bare[-1].rate:,.0f} keys/s, product "
                      f"{report.product[-1].rate:,.0f} keys/s", file=sys.stderr)
        finally:
            server.process.stop()
    else:
        print(f"no MinIO binary in {realplane.BIN_DIR} (`make real-bin`): the listing is not measured", file=sys.stderr)
    elapsed = time.monotonic() - began
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print("\n".join([*listing_table(report), "", *status_table(report.sizes, report.total), "", "targets:",
                     *targets(report)]))
    print(f"benchmark took {elapsed:.0f} s; {load}")
    if not args.no_docs:
        write_docs("python -m benchmarks.listing" + (f" {' '.join(argv)}" if argv else ""),
                   f"{elapsed:.0f} s ({load})", report)
        print("written to docs/benchmarks.md")
    return 0


def run() -> None:
    """For `make bench` (benchmarks/__main__.py)."""
    main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
