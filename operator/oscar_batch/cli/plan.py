"""`oscar-batch plan capacity`: the operator's planner run on kubectl snapshots or an OSCAR status."""
from __future__ import annotations

import argparse
import json
from typing import Any

from oscar_batch.cli import plan_batch
from oscar_batch.cli.usage import UsageError
from oscar_batch.core.planner import Needs, Plan, Policy, plan_capacity, plan_from_oscar_status


def add_commands(commands: argparse._SubParsersAction) -> None:
    plan = commands.add_parser("plan", help="capacity planning")
    plan_commands = plan.add_subparsers(dest="plan_command", required=True)
    capacity = plan_commands.add_parser(
        "capacity",
        help="how many invocations of a service the cluster fits at once",
        description="How many invocations of a service the cluster fits at once, node by node.",
    )
    source = capacity.add_argument_group("cluster snapshot")
    source.add_argument("--nodes", metavar="FILE", help="output of `kubectl get nodes -o json`")
    source.add_argument("--pods", metavar="FILE", help="output of `kubectl get pods -A -o json`")
    source.add_argument("--oscar-status", metavar="FILE", help="OSCAR GET /system/status, instead of the two above")
    service = capacity.add_argument_group("one invocation")
    service.add_argument("--cpu", required=True, metavar="QUANTITY", help="e.g. 1, 0.5, 500m")
    service.add_argument("--memory", required=True, metavar="QUANTITY", help="e.g. 3Gi, 512Mi")
    service.add_argument("--gpu", type=int, default=0, metavar="N", help="nvidia.com/gpu (default 0)")
    service.add_argument("--overhead-cpu", default="0", metavar="QUANTITY", help="CPU the job pod adds (sidecars)")
    service.add_argument("--overhead-memory", default="0", metavar="QUANTITY", help="memory the job pod adds")
    policy = capacity.add_argument_group("policy and output")
    policy.add_argument("--headroom", default="1", metavar="SHARE", help="share of the slots to use (default 1)")
    policy.add_argument("--max", type=int, dest="maximum", metavar="N", help="cap on the total")
    policy.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    capacity.set_defaults(handler=_plan_capacity)
    plan_batch.add_command(plan_commands)


def _plan_capacity(args: argparse.Namespace) -> int:
    if args.oscar_status and (args.nodes or args.pods):
        raise UsageError("give either --oscar-status or --nodes and --pods, not both")
    if not args.oscar_status and not (args.nodes and args.pods):
        raise UsageError("give --nodes and --pods (kubectl snapshots), or --oscar-status")
    try:
        needs = Needs.parse(args.cpu, args.memory, args.gpu, args.overhead_cpu, args.overhead_memory)
        policy = Policy(args.headroom, args.maximum)
        if args.oscar_status:
            plan = plan_from_oscar_status(_read_json(args.oscar_status), needs, policy)
        else:
            plan = plan_capacity(_read_items(args.nodes), _read_items(args.pods), needs, policy)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(_as_json(plan) if args.json else _as_table(plan, policy))
    return 0


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not JSON: {error}") from None


def _read_items(path: str) -> list[dict[str, Any]]:
    document = _read_json(path)
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UsageError(f"{path} is not a Kubernetes List (expected the output of `kubectl get ... -o json`)")
    return items


def _as_json(plan: Plan) -> str:
    document: dict[str, Any] = {
        "total": plan.total,
        "nodes": [
            {"name": node.name, "slots": node.slots, "limitedBy": node.limited_by, "reason": node.reason}
            for node in plan.nodes
        ],
    }
    if plan.explanation:
        document["explanation"] = plan.explanation
    return json.dumps(document)


def _as_table(plan: Plan, policy: Policy) -> str:
    rows = [("NODE", "SLOTS", "LIMITED BY", "REASON")]
    rows += [(node.name, str(node.slots), node.limited_by, node.reason) for node in plan.nodes]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = []
    for *padded, reason in rows:
        lines.append("  ".join([*(cell.ljust(width) for cell, width in zip(padded, widths, strict=True)), reason]))
    summary = f"total {plan.total}: {plan.cluster_slots} slots × headroom {float(policy.headroom):g}"
    if policy.maximum is not None:
        summary += f", at most {policy.maximum}"
    if plan.explanation:
        summary += f" — {plan.explanation}"
    return "\n".join(lines + ["", summary])
