"""`oscar-batch status NAME`: one batch at a glance — progress, rate, ETA, what it waits for, its failed items."""
from __future__ import annotations

import argparse
import datetime
import pathlib
from typing import Any

import pykube

from oscar_batch.cli.usage import UsageError, duration
from oscar_batch.clients import cluster
from oscar_batch.core import status as batch_status

BAR_WIDTH = 30


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("status", help="show one OscarBatchJob: progress, rate, ETA, failed items",
                                 description="One OscarBatchJob at a glance, read from its status.")
    parser.add_argument("name", help="the OscarBatchJob's name")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="kubeconfig file to use")
    parser.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    config = cluster.kube_config(args.kubeconfig)
    namespace = args.namespace or config.namespace or "default"
    try:
        body = cluster.Kube(pykube.HTTPClient(config)).batch(namespace, args.name)
    except cluster.KubeError as error:
        raise UsageError(str(error)) from None
    if body is None:
        raise UsageError(f"no OscarBatchJob {args.name!r} in namespace {namespace!r}")
    print(render(body, datetime.datetime.now(datetime.UTC)))
    return 0


def render(body: dict[str, Any], now: datetime.datetime) -> str:
    status = body.get("status") or {}
    seen = batch_status.summary(status, now)
    phase = status.get("phase") or "Pending"
    filled = round(seen.fraction * BAR_WIDTH)
    lines = [f"{body['metadata']['namespace']}/{body['metadata']['name']}  {phase}  "
             f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {seen.fraction:.0%}  "
             f"{seen.succeeded}/{seen.total} items succeeded, {seen.failed} failed"]
    timing = []
    if seen.elapsed is not None:
        timing.append(f"elapsed {duration(seen.elapsed)}")
    if seen.rate is not None:
        timing.append(f"{seen.rate:.1f} items/s")
    if seen.eta is not None:
        timing.append(f"ETA {duration(seen.eta)}")
    if timing:
        lines.append(", ".join(timing))
    if phase not in batch_status.FINISHED_PHASES:
        queued = f" ({seen.queued} queued by Kueue)" if seen.queued else ""
        lines.append(f"in flight: {seen.running}{queued}; parallelism {status.get('parallelism') or 0}")
    clusters = status.get("clusters") or []
    if len(clusters) > 1 or any(entry.get("access") == "Remote" or not entry.get("reachable", True)
                                for entry in clusters):
        lines.append("clusters:")
        lines.extend(f"  {entry.get('name')} ({entry.get('access')})  {entry.get('running', 0)}/"
                     f"{entry.get('parallelism', 0)} in flight, {entry.get('succeeded', 0)} items done"
                     + ("" if entry.get("reachable", True) else f"  UNREACHABLE: {entry.get('message', '')}")
                     for entry in clusters)
        reassigned, duplicates = ((status.get("invocations") or {}).get(key) or 0
                                  for key in ("reassigned", "duplicates"))
        if reassigned or duplicates:
            lines.append(f"  {reassigned} invocation(s) reassigned from a cluster cut off, {duplicates} duplicate "
                         "run(s)")
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("message"):
            lines.append(f"{condition.get('reason')}: {condition['message']}")
    message = str(status.get("message") or "")
    if message and message not in "\n".join(lines):
        lines.append(message)
    details = status.get("failedItemDetails") or []
    if details:
        lines.append(f"failed items ({seen.failed}; the first {len(details)} named):" if seen.failed > len(details)
                     else "failed items:")
        lines.extend(f"  line {d.get('line')}  {d.get('key', '?')}  {d.get('job', '')}  {d.get('reason', '')}"
                     for d in details)
    unlisted = status.get("unlistedItems") or []
    if unlisted:
        count = (status.get("items") or {}).get("unlisted") or len(unlisted)
        lines.append(f"left out of the manifest, a line break in the key ({count}"
                     + (f"; the first {len(unlisted)} named):" if count > len(unlisted) else "):"))
        lines.extend(f"  {entry.get('key')!r}" for entry in unlisted)
    if status.get("results"):
        lines.append(f"results: {status['results']}")
    return "\n".join(lines)

