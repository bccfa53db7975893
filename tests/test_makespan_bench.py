"""The makespan benchmark's own arithmetic and cluster design, checked without running it."""
from __future__ import annotations

import dataclasses
import pathlib
import sys

import pytest

from oscar_batch_sandbox.oscar import legacy_status
from oscar_batch_sandbox.runner import item_seconds
from oscar_batch_sandbox.s3 import input_key, input_number

# `benchmarks` is a folder of the checkout, not an installed package: `python -m benchmarks` runs from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import makespan  # noqa: E402

WORKLOADS = {workload.key: workload for workload in makespan.WORKLOADS}


def original_n(workload: makespan.Workload) -> int:
    config = workload.config
    status = legacy_status([node.to_object() for node in config.nodes],
                           [pod.to_object() for pod in config.tenant_pods])
    return makespan.original_parallelism(status, config.service_definition())


@pytest.mark.parametrize("key", ["uniform", "lognormal", "disruptions", "corrupt", "capacity", "incremental"])
def test_on_the_quiet_cluster_the_originals_formula_and_the_real_fit_agree(key):
    workload = WORKLOADS[key]
    assert makespan.usable_slots(workload.config) == original_n(workload) == makespan.SLOTS


def test_the_busy_cluster_has_as_many_real_slots_and_the_original_over_counts():
    busy = WORKLOADS["busy"]
    assert makespan.usable_slots(busy.config) == makespan.SLOTS
    assert original_n(busy) == 10


def test_the_large_batch_has_hundreds_of_items_per_slot():
    large = WORKLOADS["large"]
    slots = makespan.usable_slots(large.config)
    assert slots == original_n(large) == 32
    assert large.config.items >= 20_000 and large.config.items / slots >= 300


def test_work_per_slot_is_at_least_30_start_ups_and_start_up_at_least_10_ticks():
    assert makespan.ITEMS_PER_SLOT * makespan.ITEM_SECONDS >= 30 * makespan.STARTUP_SECONDS
    assert makespan.STARTUP_SECONDS >= 10 * makespan.TICK


def test_the_original_splits_as_the_reference_says():
    assert makespan.original_ranges(10, 3) == [(1, 5), (5, 8), (8, 11)]
    assert makespan.original_ranges(2, 4) == [(1, 2), (2, 3), (3, 3), (3, 3)]   # empty ranges are invoked too


def test_the_lower_bound_fits_the_work_into_the_slots_as_they_change():
    assert makespan.lower_bound(800.0, [(0.0, 8)], 10.0) == 110.0
    # 8 slots until 50, 6 until 80, then 8 again: 320 + 180 by 80, the last 300 over 8 slots.
    assert makespan.lower_bound(800.0, [(0.0, 8), (50.0, 6), (80.0, 8)], 10.0) == pytest.approx(80 + 300 / 8)
    assert makespan.lower_bound(100.0, [(0.0, 8), (50.0, 6), (80.0, 8)], 10.0) == pytest.approx(10 + 100 / 8)


def test_total_work_is_the_exact_sum_of_the_items_times_without_the_corrupt_ones():
    corrupt = WORKLOADS["corrupt"]
    config = corrupt.with_seed(2, 0.01)
    keys = config.behaviour.corrupt_inputs
    assert len(keys) == 6 and keys == corrupt.with_seed(2, 0.5).behaviour.corrupt_inputs
    assert not config.existing_outputs
    numbers = {input_number(key, config.prefix) for key in keys}
    expected = sum(item_seconds(config.behaviour, line) for line in range(1, config.items + 1)
                   if line not in numbers)
    assert makespan.total_work(config) == pytest.approx(expected)
    assert config.behaviour.time_scale == 0.01 and config.behaviour.seed == 2


def test_the_incremental_workload_starts_with_outputs_for_80_percent_and_its_bound_counts_the_rest():
    incremental = WORKLOADS["incremental"]
    config = incremental.with_seed(3, 0.01)
    existing = config.existing_outputs
    assert len(existing) == round(0.8 * config.items) and existing == incremental.with_seed(3, 0.5).existing_outputs
    assert existing != incremental.with_seed(1, 0.01).existing_outputs and not config.behaviour.corrupt_inputs
    new = [line for line in range(1, config.items + 1) if input_key(config.prefix, line) not in existing]
    assert makespan.total_work(config) == pytest.approx(sum(item_seconds(config.behaviour, line) for line in new))
    # The original's work is every item, as without the outputs.
    everything = dataclasses.replace(config, existing_outputs=frozenset())
    assert makespan.total_work(everything) == pytest.approx(
        sum(item_seconds(config.behaviour, line) for line in range(1, config.items + 1)))


def test_results_cells_are_medians_with_their_spread():
    assert makespan.spread([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert makespan.spread([1.234], 2) == "1.23"
    assert makespan.spread([None, 2.0, 4.0]) == "3 (2–4), 1 unfinished"
    assert makespan.spread([None]) == "–"
