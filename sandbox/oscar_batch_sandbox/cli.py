"""`oscar-batch-sandbox` and `oscar-batch-demo`: the embedded cluster until interrupted, for people, kubectl and
other processes; and a whole batch on it with a live progress bar.

They come with the sibling package `oscar-batch-sandbox` (`pip install ./sandbox`), never with the operator.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import signal
import sys
from collections.abc import Sequence

from oscar_batch_sandbox import Sandbox
from oscar_batch_sandbox.config import MAX_CLUSTERS, Behaviour, SandboxConfig, control_plane, workers
from oscar_batch_sandbox.demo import run_demo
from oscar_batch_sandbox.handoff import write_batch_manifests


def sandbox_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oscar-batch-sandbox",
        description="Runs an embedded Kubernetes API, S3 and OSCAR cluster(s) on localhost until interrupted, and "
                    "prints, as its first stdout line, one JSON object with every endpoint and credential.")
    add_sandbox_options(parser)
    parser.add_argument("--kubeconfig", type=pathlib.Path, required=True,
                        help="where to write a kubeconfig for the sandbox's API server")
    parser.add_argument("--manifests", type=pathlib.Path,
                        help="also write ready-to-apply Secrets and an OscarBatchJob for the sandbox here (with "
                             "--clusters above 1, one batch over every cluster)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_serve(config_from_args(args), args.kubeconfig, args.manifests))
    except KeyboardInterrupt:
        return 130


def demo_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oscar-batch-demo",
        description="Starts the sandbox and the operator, applies an OscarBatchJob over the seeded bucket, shows "
                    "its progress and exits 0 when it succeeded with one output per input (but the corrupt ones).")
    add_sandbox_options(parser)
    parser.add_argument("--timeout", type=_non_negative_float, default=300.0,
                        help="seconds to wait for the batch (default 300)")
    parser.set_defaults(items=120, failure_rate=0.1, time_scale=0.03)
    args = parser.parse_args(argv)
    try:
        return run_demo(config_from_args(args), args.timeout)
    except KeyboardInterrupt:
        return 130


def add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=_non_negative_int, default=60, help="input objects to seed (default 60)")
    parser.add_argument("--workers", type=_non_negative_int, default=3, help="worker nodes (default 3)")
    parser.add_argument("--worker-cpu", default="4", help="allocatable CPU of each worker (default 4)")
    parser.add_argument("--worker-memory", default="8Gi", help="allocatable memory of each worker (default 8Gi)")
    parser.add_argument("--item-seconds", type=_non_negative_float, default=2.0,
                        help="simulated seconds the service spends on one input (default 2)")
    parser.add_argument("--failure-rate", type=_probability, default=0.0,
                        help="probability that one invocation fails (default 0)")
    parser.add_argument("--time-scale", type=_non_negative_float, default=0.05,
                        help="real seconds per simulated second (default 0.05)")
    parser.add_argument("--legacy-status", action="store_true",
                        help="serve OSCAR's GET /system/status in its 2024 format")
    parser.add_argument("--corrupt", type=_probability, default=0.0, metavar="SHARE",
                        help="share of the inputs the service cannot read: it fails on them, every time (default 0)")
    parser.add_argument("--existing-outputs", type=_probability, default=0.0, metavar="SHARE",
                        help="share of the inputs that already have their output, as an earlier run left it "
                             "(never a corrupt one); a batch that declares its outputs skips them (default 0)")
    parser.add_argument("--clusters", type=_cluster_count, default=1,
                        help="emulated OSCAR clusters, each with these nodes, its own OSCAR Manager and job runner; "
                             "only the first one's Kubernetes API is served, all share the one S3 (default 1)")
    parser.add_argument("--token-lifetime", type=_positive_float, metavar="SECONDS",
                        help="serve an OIDC token endpoint (info's `oidc`: the refresh-token grant) whose access "
                             "tokens OSCAR takes for this long, and give the batch's Secret its keys (default: "
                             "none, OSCAR's user and password)")
    parser.add_argument("--seed", type=int, default=1,
                        help="draws which inputs are corrupt or have outputs, item times and failures (default 1)")


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        nodes=(control_plane(), *workers(args.workers, cpu=args.worker_cpu, memory=args.worker_memory)),
        items=args.items,
        behaviour=Behaviour(item_seconds=args.item_seconds, failure_rate=args.failure_rate,
                            time_scale=args.time_scale, seed=args.seed),
        legacy_status=args.legacy_status,
        clusters=args.clusters,
        token_lifetime=args.token_lifetime,
    ).with_drawn_inputs(corrupt=args.corrupt, existing_outputs=args.existing_outputs, seed=args.seed)


async def _serve(config: SandboxConfig, kubeconfig: pathlib.Path, manifests: pathlib.Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Sandbox(config) as sandbox:
        sandbox.write_kubeconfig(kubeconfig)
        handoff = {"kubeconfig": str(kubeconfig.resolve())}
        if manifests:
            write_batch_manifests(manifests, sandbox.info)
            handoff["manifests"] = str(manifests.resolve())
        print(json.dumps({**sandbox.info, **handoff}), flush=True)
        print(f"sandbox ready: kubectl --kubeconfig {kubeconfig} get nodes   (Ctrl-C to stop)",
              file=sys.stderr, flush=True)
        await stop.wait()
    with contextlib.suppress(FileNotFoundError):
        kubeconfig.unlink()
    return 0


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _cluster_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_CLUSTERS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_CLUSTERS}, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value
