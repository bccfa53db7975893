"""How the cluster's free slots are split between the batches that are dispatching. Pure.

Max-min fairness over what each batch can use: no batch gets more slots than it has ranges to run, what one
cannot use goes to the others, and slots that do not divide evenly go to the oldest batches first
(creationTimestamp, then name), so the order never depends on UIDs. A batch that is waiting (for a Secret, a
valid spec, S3 or OSCAR), suspended or finished has no claim at all.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Claim:
    uid: str
    created: str      # creationTimestamp, RFC 3339: orders like time
    name: str         # namespace/name, the tie-breaker
    demand: int       # ranges it could have in flight now (pending + running, capped by maxParallelism)


def fair_shares(slots: int, claims: Iterable[Claim]) -> dict[str, int]:
    """UID → slots. The shares add up to min(slots, Σ demand)."""
    ordered = sorted(claims, key=lambda claim: (claim.created, claim.name, claim.uid))
    shares = {claim.uid: 0 for claim in ordered}
    hungry = [claim for claim in ordered if claim.demand > 0]
    remaining = max(slots, 0)
    while hungry and remaining:
        even = remaining // len(hungry)
        if even == 0:
            for claim in hungry[:remaining]:  # the remainder, oldest first
                shares[claim.uid] += 1
            break
        still_hungry = []
        for claim in hungry:
            given = min(even, claim.demand - shares[claim.uid])
            shares[claim.uid] += given
            remaining -= given
            if shares[claim.uid] < claim.demand:
                still_hungry.append(claim)
        hungry = still_hungry
    return shares


def capped(slots: list[int], cap: int) -> list[int]:
    """Slots per cluster with their sum brought down to `cap` (0: no cap), one slot at a time from the cluster
    with the most: what is left stays as even as the clusters allow."""
    if not cap or sum(slots) <= cap:
        return list(slots)
    kept = list(slots)
    for _ in range(sum(slots) - cap):
        most = max(range(len(kept)), key=lambda index: (kept[index], index))   # ties: the last gives
        kept[most] -= 1
    return kept


def spread(count: int, free: list[int]) -> list[int]:
    """Which cluster (by index) each of `count` invocations goes to, given each one's free slots: round robin over
    those with a slot left, so that every cluster with room starts work at once. Fewer when slots run out."""
    left, chosen = list(free), list[int]()
    while len(chosen) < count and any(slots > 0 for slots in left):
        for index, slots in enumerate(left):
            if slots > 0 and len(chosen) < count:
                chosen.append(index)
                left[index] -= 1
    return chosen
