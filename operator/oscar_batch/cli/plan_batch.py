"""`oscar-batch plan batch FILE.yaml`: what an OscarBatchJob would do, asked of the live cluster, bucket and OSCAR —
the inputs it matches, the ranges, the parallelism node by node, and an ETA from the service's past Jobs. It reads
the Secrets the batch names and invokes, writes and creates nothing."""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

import pykube
import yaml

from oscar_batch.cli.usage import UsageError, duration
from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.oscar import OscarClient, OscarError
from oscar_batch.controller.resolver import Resolver, Waiting
from oscar_batch.core import chunking, invocation, planner, sharing
from oscar_batch.core.endpoints import EndpointPolicy
from oscar_batch.core.keys import Listing, Unlisted
from oscar_batch.core.quantity import format_bytes, format_millicores
from oscar_batch.core.spec import ClusterSpec, SpecError, parse_spec
from oscar_batch.core.status import parse_time

SAMPLE = 5


def add_command(plan_commands: argparse._SubParsersAction) -> None:
    parser = plan_commands.add_parser(
        "batch", help="dry run of an OscarBatchJob against the live cluster, bucket and OSCAR",
        description="What an OscarBatchJob would do now: inputs matched, ranges, parallelism node by node, ETA. "
                    "Invokes and writes nothing.")
    parser.add_argument("file", type=pathlib.Path, help="YAML with the OscarBatchJob (other documents are skipped)")
    parser.add_argument("-n", "--namespace", help="the batch's namespace if the file has none "
                                                  "(default: the kubeconfig context's)")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="kubeconfig file to use")
    parser.set_defaults(handler=plan_batch)


def plan_batch(args: argparse.Namespace) -> int:
    document = _batch_document(args.file)
    config = cluster.kube_config(args.kubeconfig)
    namespace = document["metadata"].get("namespace") or args.namespace or config.namespace or "default"
    try:
        spec = parse_spec(document.get("spec") or {})
    except SpecError as error:
        raise UsageError(f"{args.file}: {error}") from None
    # The dry run reads the Secrets with the caller's own rights and sends their credentials where the file says:
    # the operator's allow-list of endpoints is its own, and not checked here; the Secrets' opt-in is.
    anywhere = EndpointPolicy(oscar_hosts=("*:*",), s3_hosts=("*:*",), allow_http=True)
    resolver = Resolver(cluster.Kube(pykube.HTTPClient(config)), namespace, anywhere)
    try:
        print("\n".join(_dry_run(resolver, spec, f"{namespace}/{document['metadata'].get('name', '?')}")))
    except Waiting as waiting:
        print(f"oscar-batch: {waiting.reason}: {waiting.message}", file=sys.stderr)
        return 1
    except (cluster.KubeError, OscarError, manifest.StorageError) as error:
        print(f"oscar-batch: {error}", file=sys.stderr)
        return 1
    return 0


def _batch_document(path: pathlib.Path) -> dict[str, Any]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not YAML: {error}") from None
    batches = [d for d in documents if isinstance(d, dict) and d.get("kind") == "OscarBatchJob"]
    if len(batches) != 1:
        raise UsageError(f"{path} holds {len(batches)} OscarBatchJob documents; give a file with exactly one")
    batches[0].setdefault("metadata", {})
    return batches[0]


def _dry_run(resolver: Resolver, spec: Any, ref: str) -> list[str]:
    lines, clusters = [], []
    for each in spec.clusters:
        oscar = resolver.oscar_client(each)
        service = resolver.service(oscar, spec)
        needs = resolver.needs(service)
        where = f" on cluster {each.name} ({each.access})" if len(spec.clusters) > 1 else ""
        lines.append(f"batch {ref} → OSCAR service {spec.service}{where} (per invocation: cpu "
                     f"{format_millicores(needs.pod_cpu)}, memory {format_bytes(needs.pod_memory)}, gpu {needs.gpus}), "
                     f"Jobs in namespace {resolver.jobs_namespace(each, service)}")
        clusters.append((each, oscar, needs))
    s3 = resolver.s3_client(spec)
    if not manifest.bucket_exists(s3, spec):
        raise Waiting("BucketNotFound", f"bucket {spec.bucket!r} does not exist at {spec.s3_endpoint}")
    listing, sample = Listing(), list[str]()
    for key, reason, _ in manifest.inputs(s3, spec):
        if reason is not None:
            listing.left_out(Unlisted(key, reason))
            continue
        listing.items += 1
        if len(sample) < SAMPLE:
            sample.append(key)
    items = listing.items
    lines.append(f"inputs: {items} in s3://{spec.bucket}/{spec.prefix}"
                 + (f" (first: {', '.join(sample)}{', …' if items > len(sample) else ''})" if sample else ""))
    if listing.unlisted:
        lines.append(f"left out: {listing.message()}")
    slots = []
    for each, oscar, needs in clusters:
        # One cluster: the batch's own cap is its cap; several: the batch's caps their sum, below.
        maximum = each.max_parallelism or (spec.max_parallelism if len(clusters) == 1 else 0)
        plan = _plan(resolver.kube, oscar, needs, planner.Policy(headroom=spec.headroom, maximum=maximum or None),
                     each)
        slots.append(plan.total)
        where = f" on cluster {each.name}" if len(clusters) > 1 else ""
        capped = f", maxParallelism {maximum}" if maximum else ""
        lines.append(f"parallelism{where}: {plan.total} (the cluster fits {plan.cluster_slots} invocation(s); "
                     f"headroom {float(spec.headroom):g}{capped})"
                     + (f" — {plan.explanation}" if plan.explanation else ""))
        lines += [f"  {node.name}: {node.slots} slot(s), limited by {node.limited_by}" for node in plan.nodes]
    total = sum(sharing.capped(slots, spec.max_parallelism))
    if len(clusters) > 1:
        lines.append(f"parallelism in all: {total}"
                     + (f" (maxParallelism {spec.max_parallelism})" if spec.max_parallelism else ""))
    timings, past = _past_timings(clusters[0][1], spec.service)
    found = chunking.estimate(items=items, slots=total or 1, timings=timings, fixed=spec.items_per_invocation)
    lines.append(f"ranges: {len(found.sizes)} ({found.describe()} lines)" if found.sizes else "ranges: none")
    if found.seconds is None:
        lines.append("ETA: unknown (OSCAR lists no finished ranges of this service to learn from)")
    else:
        lines.append(f"ETA: about {duration(found.seconds)} once running, from {past} finished range(s) of this "
                     f"service (start-up {timings.startup:.1f} s, {timings.per_item:.2f} s per item), without "
                     "listing and without failures")
    lines.append("nothing was invoked or written")
    return lines


def _plan(kube: cluster.Kube, oscar: OscarClient, needs: planner.Needs, policy: planner.Policy,
          each: ClusterSpec) -> planner.Plan:
    """What one cluster fits: from its Nodes and Pods (InCluster, unless they are forbidden), else from OSCAR."""
    if not each.remote:
        try:
            return planner.plan_capacity(kube.nodes(), kube.pods(), needs, policy)
        except cluster.Forbidden:
            pass
    return planner.plan_from_oscar_status(oscar.cluster_status(), needs, policy)


def _past_timings(oscar: OscarClient, service: str) -> tuple[chunking.Timings, int]:
    """Start-up and per-item times fitted on the service's finished ranges that OSCAR still lists (Jobs the
    operator ran carry their lines in their names)."""
    timings, past = chunking.Timings(), 0
    for name, info in oscar.jobs(service):
        identity = invocation.name_identity(name)
        started, finished = parse_time(info.get("start_time")), parse_time(info.get("finish_time"))
        if info.get("status") != "Succeeded" or identity is None or not started or not finished:
            continue
        timings.record(accepted=started.timestamp(), ready=None, finished=finished.timestamp(),
                       lines=identity.end - identity.start)
        past += 1
    return timings, past

