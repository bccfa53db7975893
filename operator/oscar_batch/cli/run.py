"""`oscar-batch run`: the operator, against the kubeconfig given or the in-cluster ServiceAccount."""
from __future__ import annotations

import argparse
import pathlib
import time

import kopf

from oscar_batch.controller import handlers, readiness
from oscar_batch.controller.metrics import Metrics
from oscar_batch.core.cadence import Timing
from oscar_batch.core.endpoints import EndpointPolicy, parse_patterns

PEERING_LIFETIME = 60   # kopf's default


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run the OscarBatchJob operator",
                                 description="Runs the operator until interrupted. Uses --kubeconfig, else "
                                             "$KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config.")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="kubeconfig file to use")
    parser.add_argument("--namespace", action="append", default=[],
                        help="watch only this namespace (repeatable; include the OSCAR services namespace); "
                             "default: all namespaces")
    parser.add_argument("--allow-oscar", metavar="HOSTS", type=_patterns, action="append", default=[],
                        help="OSCAR hosts a batch may name in spec.oscar.endpoint, comma-separated patterns (HOST or "
                             "HOST:PORT, '*' as wildcard: oscar.example.org, *.example.org, 127.0.0.1:*; without a "
                             "port only the scheme's default); repeatable. Default: none, so no batch runs")
    parser.add_argument("--allow-s3", metavar="HOSTS", type=_patterns, action="append", default=[],
                        help="S3 hosts a batch may name in spec.storage.endpoint, as --allow-oscar. Default: none")
    parser.add_argument("--allow-http", action="store_true",
                        help="let batches name plain http:// endpoints among the allowed hosts (their credentials "
                             "then cross the network readable); default: https only")
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain",
                        help="plain text, or one JSON object per line (default plain)")
    parser.add_argument("--metrics", metavar="HOST:PORT", type=_address,
                        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:9090")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve a liveness probe here, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--readiness", metavar="HOST:PORT", type=_address,
                        help=f"serve a readiness probe at http://HOST:PORT{readiness.PATH}: ready once the Jobs "
                             f"of every watched namespace were listed, e.g. 0.0.0.0:8081")
    parser.add_argument("--peering", metavar="NAME",
                        help="run as one of several replicas: only the oldest running one acts, the others stand "
                             "by; NAME is the kopf peering object (ClusterKopfPeering, or KopfPeering in each "
                             "--namespace), created at start-up when missing. Default: standalone")
    parser.add_argument("--peering-lifetime", type=int, default=PEERING_LIFETIME, metavar="SECONDS",
                        help=f"with --peering: a replica not heard from for this long is presumed dead and a "
                             f"standby takes over (default {PEERING_LIFETIME})")
    defaults = Timing()
    parser.add_argument("--tick", type=float, default=defaults.tick,
                        help=f"seconds between looks at the Jobs (default {defaults.tick})")
    parser.add_argument("--plan-interval", type=float, default=defaults.plan_interval,
                        help=f"seconds between capacity plans while nothing ends (default {defaults.plan_interval})")
    parser.add_argument("--status-interval", type=float, default=defaults.status_interval,
                        help=f"minimum seconds between status patches (default {defaults.status_interval})")
    parser.add_argument("--retry-delay", type=float, default=defaults.retry_delay,
                        help=f"seconds before retrying after a problem such as a missing Secret "
                             f"(default {defaults.retry_delay})")
    parser.add_argument("--max-backoff", type=float, default=defaults.max_backoff,
                        help=f"longest delay between two tries of something that needs a person, such as a wrong "
                             f"service name (default {defaults.max_backoff})")
    parser.add_argument("--unseen-job-timeout", type=float, default=defaults.unseen_job_timeout,
                        help=f"seconds after which an invocation OSCAR accepted but whose Job never appeared is "
                             f"checked with OSCAR and, if unknown there, invoked again "
                             f"(default {defaults.unseen_job_timeout})")
    parser.add_argument("--remote-only", action="store_true",
                        help="reach every batch's OSCAR clusters through their OSCAR API only (access: Remote): no "
                             "Jobs watch and no Nodes or Pods read, so the operator needs no rights on them; a batch "
                             "naming an InCluster cluster waits (NamespaceNotWatched)")
    parser.add_argument("--list-interval", type=float, default=defaults.list_interval,
                        help=f"seconds between two readings of a Remote cluster's job listing "
                             f"(default {defaults.list_interval})")
    parser.add_argument("--reassign-after", type=float, default=defaults.reassign_after,
                        help=f"seconds a Remote cluster of a batch with several may stay cut off before its ranges in "
                             f"flight run on the others (default {defaults.reassign_after})")
    parser.add_argument("--cancel-timeout", type=float, default=defaults.cancel_timeout,
                        help=f"seconds a deleted batch may spend deleting its Jobs and manifest before its "
                             f"finalizer is released (default {defaults.cancel_timeout})")
    parser.set_defaults(handler=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    timing = Timing(tick=args.tick, plan_interval=args.plan_interval,
                    min_replan=min(Timing().min_replan, args.plan_interval),
                    status_interval=args.status_interval, retry_delay=args.retry_delay,
                    max_backoff=args.max_backoff, unseen_job_timeout=args.unseen_job_timeout,
                    cancel_timeout=args.cancel_timeout, list_interval=args.list_interval,
                    reassign_after=args.reassign_after)
    kopf.configure(verbose=args.verbose,
                   log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL)
    metrics = Metrics()
    if args.metrics:
        metrics.serve(*args.metrics)
    endpoints = EndpointPolicy(oscar_hosts=tuple(host for hosts in args.allow_oscar for host in hosts),
                               s3_hosts=tuple(host for hosts in args.allow_s3 for host in hosts),
                               allow_http=args.allow_http)
    memo = handlers.memo(timing, args.namespace, metrics, endpoints, kubeconfig=args.kubeconfig,
                         peering=args.peering, peering_lifetime=args.peering_lifetime, remote_only=args.remote_only)
    if args.readiness:
        host, port = args.readiness
        readiness.serve(host, port, ready=lambda: memo.jobs.synced)
    # With peers, the replica started first has the highest priority and acts; one started later stands by, and
    # takes over when the first leaves (at once) or dies (after --peering-lifetime).
    kopf.run(standalone=not args.peering, peering_name=args.peering, priority=-time.time_ns() // 1000,
             clusterwide=not args.namespace, namespaces=args.namespace, liveness_endpoint=args.liveness, memo=memo)
    return 0


def _patterns(value: str) -> tuple[str, ...]:
    try:
        return parse_patterns(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:9090)")
    return host, int(port)
