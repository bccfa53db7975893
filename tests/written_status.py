"""Every status field the controller writes, gathered from its own patches: the batch controller driven at its own
level (test_batch_controller's World) through runs that between them take every route that writes status —
waiting, an ignored spec edit, Kueue holding Jobs back, a corrupt input named, a tolerated failure, a redrive, the
verdict, inputs skipped because their outputs exist — and the patches merged into one status that holds every
field any of them wrote."""
from __future__ import annotations

from typing import Any

from oscar_batch.controller.job_store import JobStore
from test_batch_controller import World, finish, kueue_cluster_queue, restarted, with_outputs


async def written_status() -> dict[str, Any]:
    patches: list[dict[str, Any]] = []
    for run in (_waiting_then_an_ignored_edit, _queued_by_kueue, _failed_then_redriven, _outputs_skipped):
        patches.extend(await run())
    merged: dict[str, Any] = {}
    for patch in patches:
        union(merged, patch)
    return merged


async def _waiting_then_an_ignored_edit() -> list[dict[str, Any]]:
    world = World(items=8, itemsPerInvocation=0)
    world.store = world.oscar.store = world.controller.jobs = JobStore()   # a watch that has not listed yet

    def script(world: World) -> None:
        if world.clock.now > 1000 + 20:
            world.store.replace(None, [])
        if world.clock.now > 1000 + 40 and world.body["spec"]["service"] == "fish":
            world.body["spec"]["service"] = "other"
            world.body["metadata"]["generation"] += 1
        if world.clock.now > 1000 + 50:
            world.oscar.finish_all()

    world.on_tick = script
    await world.run()
    return world.kube.patches


async def _queued_by_kueue() -> list[dict[str, Any]]:
    world = World(items=12)
    world.oscar.kueue_queue = "oscar-lq-fish"

    def script(world: World) -> None:
        world.kube.cluster_queue = kueue_cluster_queue(world, cpus=2)
        world.oscar.finish_all()
        world.oscar.admit(quota=2)

    world.on_tick = script
    await world.run()
    return world.kube.patches


async def _failed_then_redriven() -> list[dict[str, Any]]:
    world = World(items=40, itemsPerInvocation=0, retries=0, toleratedFailures=1)
    bad = {3, 17}
    world.on_tick = lambda world: finish(world, bad=bad)
    await world.run()
    bad.clear()
    world.body["spec"]["redrive"] = 1
    world.body["metadata"]["generation"] += 1
    restarted(world)
    await world.run()
    return world.kube.patches


async def _outputs_skipped() -> list[dict[str, Any]]:
    world = with_outputs(World(items=8), done=range(1, 5), key="{key}.json", writtenAfter="2026-01-01T00:00:00Z")
    world.on_tick = lambda world: world.oscar.finish_all()
    await world.run()
    return world.kube.patches


def union(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` merged into `into`, keeping every field either has (a null, a merge patch's removal, adds none).
    Lists keep one item per shape (per `type` for conditions, a list-map), merged likewise."""
    for key, value in patch.items():
        if value is None:
            continue
        if isinstance(value, dict):
            into[key] = union(into.get(key) if isinstance(into.get(key), dict) else {}, value)
        elif isinstance(value, list):
            into[key] = _union_of_items(into.get(key) if isinstance(into.get(key), list) else [], value)
        else:
            into[key] = value
    return into


def _union_of_items(into: list[Any], items: list[Any]) -> list[Any]:
    def shape(item: Any) -> Any:
        return item.get("type") or tuple(sorted(item)) if isinstance(item, dict) else type(item).__name__

    for item in items:
        same = next((kept for kept in into if shape(kept) == shape(item)), None)
        if same is None:
            into.append(union({}, item) if isinstance(item, dict) else item)
        elif isinstance(item, dict):
            union(same, item)
    return into


def field_paths(value: Any, prefix: str = "") -> set[str]:
    """Every field in a status, as dotted paths (`[]` for a list's items)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths |= {path} | field_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= field_paths(item, f"{prefix}[]")
    return paths
