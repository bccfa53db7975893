"""The scale benchmark (`make bench`): its arithmetic on made-up samples, and one run at a tiny size, so that
`make bench` keeps working. Behaviour only: what the run measures is for the benchmark to report."""
from __future__ import annotations

import gc
import pathlib
import sys

import pytest

# `benchmarks` is a folder of the checkout, not an installed package: `python -m benchmarks` runs from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import scale  # noqa: E402


def samples(cpu_per_job: list[float], jobs_per_step: int = 1000) -> list[scale.Sample]:
    """One sample per step; in step k the operator spends cpu_per_job[k] CPU s per completed Job, each Job
    making four changes."""
    taken, cpu, completed = [scale.Sample(at=0.0, cpu=0.0, rss_mb=100.0, changes=0, completed=0)], 0.0, 0
    for step, cost in enumerate(cpu_per_job, start=1):
        cpu += cost * jobs_per_step
        completed += jobs_per_step
        taken.append(scale.Sample(at=float(step), cpu=cpu, rss_mb=100.0 + step, changes=4 * completed,
                                  completed=completed))
    return taken


@pytest.mark.parametrize(("costs", "flat"), [
    ([0.002] * 30, True),                       # the same cost throughout: slope 0
    ([0.002 + 0.0001 * k for k in range(30)], False),   # each step dearer than the last
])
def test_cost_by_thirds_and_its_slope(costs, flat):
    thirds, slope = scale.per_third(samples(costs))
    assert [third.low for third in thirds] == [0, 10_000, 20_000]
    assert thirds[0].cpu_per_1k == pytest.approx(1000 * sum(costs[:10]) / 10 / 4)   # CPU s per 1k changes
    assert (thirds[-1].cpu_per_1k / thirds[0].cpu_per_1k <= scale.FLAT_RATIO) is flat
    assert slope == pytest.approx(0.0, abs=1e-9) if flat else slope > 0


def test_rss_growth_is_per_10k_jobs():
    assert scale.rss_growth(samples([0.001] * 20)) == pytest.approx(10.0)  # 1 MiB per 1,000 Jobs


def test_percentiles_come_from_the_latencies_measured():
    result = scale.Result(scenario="s", batches=1, ranges=100, finished=1, seconds=1.0, changes=400, cpu=1.0,
                          rss_peak_mb=1.0, latencies=[float(n) for n in range(1, 101)])
    assert (result.percentile(0.5), result.percentile(0.95)) == (51.0, 96.0)
    assert scale.Result(scenario="s", batches=1, ranges=1, finished=0, seconds=1.0, changes=0, cpu=0.0,
                        rss_peak_mb=1.0, latencies=[]).percentile(0.95) is None


def test_scenarios_run_without_full_collections_and_put_the_collector_back():
    before = gc.get_threshold()
    with scale.without_full_collections():
        assert gc.get_threshold() == (before[0], before[1], scale.NEVER)
    assert gc.get_threshold() == before


def test_a_tiny_run_finishes_every_batch_and_reports_each_scenario(capsys):
    assert scale.main(["--only", "small", "--small", "3", "--small-items", "2", "--only", "many", "--many", "2",
                       "--many-ranges", "20", "--budget", "150", "--no-docs"]) == 0
    cells = [[cell.strip() for cell in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = {row[0]: row[2] for row in cells if row[0] != "scenario"}
    assert rows == {"3 small batches": "3/3", "2 concurrent batches": "2/2"}
