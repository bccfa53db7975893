"""The two listings of the million-inputs benchmark (`benchmarks.listing`), each run as a process of its own so
that its peak RSS is the listing's: `python -m benchmarks.listing_child bare|product URL ACCESS_KEY SECRET_KEY`
prints one JSON `Listed`. Imports only what the listing needs."""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import pathlib
import sys
import time
import uuid
from typing import Any

import minio

from oscar_batch.clients import manifest
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_controller import BatchController
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.job_store import JobStore
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import PEER_SHARE, PEER_THREADS, Peers, Resolver
from oscar_batch.core.cadence import Timing
from oscar_batch.core.endpoints import EndpointPolicy
from oscar_batch.core.spec import parse_spec

BUCKET = "million"
PREFIX = "input/"
MANIFEST_KEY = "manifests/million.txt"     # outside the prefix: bare and product list the same keys


@dataclasses.dataclass
class Listed:
    kind: str                   # bare | product
    keys: int
    seconds: float
    rss_mb: float               # peak RSS of the process
    rss_before_mb: float        # ... its RSS just before it listed
    progress_gaps: list[float] = dataclasses.field(default_factory=list)  # product: seconds between progress patches

    @property
    def rate(self) -> float:
        return self.keys / self.seconds


def _rss_mb(field: str = "VmRSS") -> float:
    status_lines = pathlib.Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status_lines if line.startswith(f"{field}:"))


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a large parent starts at the
    # parent's peak (579 MiB for every listing here, the parent having sized a million-item status).
    return _rss_mb("VmHWM")


def bare_listing(url: str, access_key: str, secret_key: str) -> Listed:
    s3 = minio.Minio(url.removeprefix("http://"), access_key=access_key, secret_key=secret_key, secure=False,
                     region="us-east-1")
    before = _rss_mb()
    began = time.perf_counter()
    keys = sum(1 for _ in s3.list_objects(BUCKET, prefix=PREFIX, recursive=True))
    return Listed("bare", keys, time.perf_counter() - began, _peak_rss_mb(), before)


class RecordingKube:
    """The API server as the listing sees it: status patches land in the body and are timed; no other batch."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patched_at: list[tuple[float, dict[str, Any]]] = []

    def patch_batch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patched_at.append((time.monotonic(), patch))
        current = self.body.setdefault("status", {})
        for field, value in patch.items():
            if value is None:
                current.pop(field, None)
            else:
                current[field] = value

    def batch(self, namespace: str, name: str) -> None:
        return None


class NeverStopped:
    async def wait(self, timeout: float | None = None) -> bool:
        await asyncio.sleep(timeout or 0)
        return False

    def __bool__(self) -> bool:
        return False


def product_listing(url: str, access_key: str, secret_key: str) -> Listed:
    raw_spec = {"service": "fish", "oscar": {"endpoint": "http://oscar.invalid", "credentialsSecret": "o"},
                "storage": {"endpoint": url, "credentialsSecret": "s", "bucket": BUCKET, "prefix": PREFIX},
                "manifestKey": MANIFEST_KEY}
    spec = parse_spec(raw_spec)
    # A new batch each round: the manifest the last round wrote is another (finished) batch's, listed again.
    body = {"metadata": {"uid": str(uuid.uuid4()), "namespace": "default", "name": "million", "generation": 1,
                         "creationTimestamp": "2026-12-01T00:00:00Z"}, "spec": raw_spec}
    kube = RecordingKube(body)
    calls = PeerCalls(PEER_THREADS, PEER_SHARE)
    controller = BatchController(body=body, jobs=JobStore(), batches=ActiveBatches(),
                                 cluster_view=ClusterView(kube, max_age=Timing().min_replan),  # type: ignore[arg-type]
                                 stopped=NeverStopped(), kube=kube, emit=lambda *event: None,  # type: ignore[arg-type]
                                 timing=Timing(), peer_calls=calls,
                                 resolver=Resolver(kube, "default", EndpointPolicy((), ())))  # type: ignore[arg-type]
    peers = Peers(s3=manifest.client(spec, access_key, secret_key), s3_endpoint=spec.s3_endpoint, calls=calls)
    before = _rss_mb()
    began = time.monotonic()
    inputs = asyncio.run(controller._manifest(spec, peers)).items
    ended = time.monotonic()
    shown = [at for at, patch in kube.patched_at if "listed" in patch]
    gaps = [later - earlier for earlier, later in itertools.pairwise([*shown, ended])]
    return Listed("product", body["status"].get("listed") or inputs, ended - began, _peak_rss_mb(), before, gaps)


def main(argv: list[str]) -> int:
    kind, url, access_key, secret_key = argv
    listing = (bare_listing if kind == "bare" else product_listing)(url, access_key, secret_key)
    print(json.dumps(dataclasses.asdict(listing)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
