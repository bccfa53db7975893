"""The million-inputs benchmark (`make bench`): its status sizes on a small batch, and one listing run at a tiny size
against the real tier's MinIO (skipped without its binary, failed under OSCAR_REAL_REQUIRED), so that `make bench`
keeps working. Behaviour only: what the run measures is for the benchmark to report."""
from __future__ import annotations

import json
import pathlib
import sys

# `benchmarks` is a folder of the checkout, not an installed package: `python -m benchmarks` runs from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import listing  # noqa: E402


def table(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| ")]


def test_status_sizes_cover_every_failure_pattern_and_say_where_the_line_sets_went():
    sizes = listing.status_sizes(4_000)
    assert [size.pattern for size in sizes][:4] == list(listing.failure_patterns(4_000))
    assert [size.failed for size in sizes] == [2_000, 400, 4, 2_000, 2_000]
    for size in sizes:
        assert size.spilled is (size.completed_chars + size.failed_chars > listing.status.LINE_SETS_BUDGET)
        assert (size.results_bytes > 0) is size.spilled and size.status_bytes > 0


def test_a_tiny_run_seeds_once_lists_both_ways_and_reports_the_targets(tmp_path, capsys):
    listing.realplane.require("minio")
    arguments = ["--keys", "1500", "--rounds", "1", "--items", "2000", "--cache", str(tmp_path), "--no-docs"]
    assert listing.main(arguments) == 0
    seeded = json.loads((tmp_path / "1500" / "seeded.json").read_text())
    assert seeded["keys"] == 1500
    rows = table(capsys.readouterr().out)
    listed = {row[0]: row for row in rows if row[0] in ("bare", "product")}
    assert listed["bare"][2] == listed["product"][2] == "1,500"
    assert int(listed["product"][7]) >= 1                     # the Listing status, at least
    assert listing.main(arguments) == 0                       # the second run reuses the seeded data
    assert "seeded" not in capsys.readouterr().err
