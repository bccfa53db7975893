"""The federation benchmark (`make bench`): the OSCAR simulator's request count it reads, its arithmetic on made-up
samples, and one run at a tiny size, so that `make bench` keeps working. Behaviour only: what the run measures is
for the benchmark to report."""
from __future__ import annotations

import pathlib
import sys

from oscar_batch_sandbox.config import SandboxConfig
from test_oscar_simulator import start_oscar

# `benchmarks` is a folder of the checkout, not an installed package: `python -m benchmarks` runs from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import federation  # noqa: E402


async def test_the_simulator_counts_its_requests_by_method_and_route():
    async for oscar in start_oscar(SandboxConfig()):
        service = oscar.config.service
        assert (await oscar.invoke({"start": 1, "end": 2}, job_id="job-a"))[0] == 201
        for path in (f"/system/logs/{service}", f"/system/logs/{service}?page=am9iLWE=", "/system/status",
                     f"/system/services/{service}", "/nowhere"):
            await oscar.get(path)
        await oscar.get("/system/status", headers={})   # refused (no credentials), counted all the same
        assert await oscar.delete(f"/system/logs/{service}/job-a") == 204
        assert oscar.simulator.requests == {
            ("POST", "/job/{service}"): 1, ("GET", "/system/logs/{service}"): 2, ("GET", "/system/status"): 2,
            ("GET", "/system/services/{service}"): 1, ("GET", "(no route)"): 1,
            ("DELETE", "/system/logs/{service}/{job}"): 1}
        assert federation.by_kind(oscar.simulator.requests) == {
            "listing pages": 2, "status": 2, "invocations": 1, "deletions": 1, "service reads": 1, "other": 1}


def sample(at: float, ended: int, pages: int) -> federation.Sample:
    return federation.Sample(at=at, clusters=[], requests={"c": {"listing pages": pages}}, jobs={"c": 0},
                             ended={"c": ended})


def test_listing_pages_per_minute_by_third_of_the_ranges_finished():
    # 30 ranges end, one every 2 s; the listing is read once every 2 s, then twice as often in the last third.
    samples, pages = [], 0
    for step in range(31):
        samples.append(sample(at=2.0 * step, ended=step, pages=pages))
        pages += 1 if step < 20 else 2
    first, middle, last = federation.listing_by_thirds(samples, "c")
    assert first == middle == 30.0
    assert last > 50.0
    # A third that lasted too short a time to give a rate gives none.
    assert federation.listing_by_thirds([sample(0.0, 0, 0), sample(1.0, 30, 5)], "c") == [None, None, None]


def test_the_speed_up_is_the_ratio_of_the_medians_and_the_listing_can_be_left_out():
    variant = federation.Variant("mixed", one=[federation.Run("a", seconds=600.0, listing=20.0),
                                               federation.Run("a", seconds=640.0, listing=40.0)],
                                 two=[federation.Run("b", seconds=320.0, listing=20.0),
                                      federation.Run("b", seconds=None)])
    assert variant.ratio() == 620.0 / 320.0
    assert variant.pair_ratios() == [600.0 / 320.0]
    assert variant.ratio(after_listing=True) == 590.0 / 300.0


def test_every_cluster_is_capped_and_the_first_is_in_cluster_only_in_the_mixed_variant():
    info = {"clusters": [{"name": f"oscar-{n}", "endpoint": f"http://127.0.0.1:{n}", "username": "u",
                          "password": "p"} for n in (1, 2)]}
    mixed, remote = federation.placement(2, "mixed")(info), federation.placement(2, "remote")(info)
    assert [(c["access"], c["maxParallelism"]) for c in mixed] == [("InCluster", 8), ("Remote", 8)]
    assert [(c["access"], c["maxParallelism"]) for c in remote] == [("Remote", 8), ("Remote", 8)]
    assert [c["name"] for c in federation.placement(1, "remote", cap=16)(info)] == ["oscar-1"]


def test_a_tiny_run_finishes_every_batch(capsys):
    assert federation.main(["--items", "160", "--repeats", "1", "--variant", "mixed", "--sizes", "200",
                            "--time-scale", "0.01", "--rate-time-scale", "0.02", "--production-size", "0",
                            "--no-docs"]) == 0
    out = capsys.readouterr().out
    assert "- Every batch Succeeded: met." in out
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
    assert [row[2] for row in rows if row[0] == "mixed" and row[1] in ("1", "2")] == ["oscar-1", "oscar-1", "oscar-2"]
    [rate] = [row for row in rows if row[0] == "200"]
    assert rate[2] == "4"    # 200 items, 50 a range
