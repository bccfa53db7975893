"""What the sandbox needs of kmock 0.8 that kmock has no public API for: the one module that reaches inside it.

The rest of the sandbox uses kmock's public names only (`kmock.KubernetesEmulator`, `kmock.Request`,
`kmock.action`, `kmock.Bus`, the `objects` and `resources` arrays, `kmock.Object`'s history, ...) and overrides
the methods kmock's emulator registers as its own fallback reactions (`_handle`, `_serve_list`, `_serve_watch`,
`_serve_fetch`, `_serve_create`, `_serve_update`, `_serve_delete`, `_serve_version`), as kmock's documentation
invites a subclass to do. The four items below have no public equivalent; each says which API kmock lacks.
Until kmock has them, sandbox/pyproject.toml pins kmock below its next minor release.

1. `_parse_path` (installed on import): kmock's path parser reads `/api/v1/namespaces` as the prefix of a
   namespaced path, so `GET /api/v1/namespaces` fails (ValueError) and `/api/v1/namespaces/NAME[/status]` names
   no resource. Lacking: the core `namespaces` resource parsed as a resource, or a public hook to parse a
   request's path (`kmock._internal.parsing.parse_path` is replaced here, process-wide).
2. `event_bus`, `write_lock`: the sandbox's own controllers change objects in-process and must emit the watch
   events an HTTP write emits, under the lock HTTP writes hold (which a watch also takes to join the event
   stream in the same instant as it reads the objects). kmock's `objects` array changes silently. Lacking: an
   in-process write API that emits watch events, or public access to a resource's event bus and that lock
   (`KubernetesEmulator._buses`, `KubernetesEmulator._lock`).
3. `forget_requests`: kmock records every request, for assertions, and keeps it: the handler's record
   (`Root._requests`) and each reaction's (`Reaction._requests`). A sandbox that runs for hours must forget
   them. Lacking: a bound on the record, or a public way to clear it.
4. `ConstantTimeReactions`, `sees`: kmock finds a request's reaction by asking each reaction's view
   `request in view`, which lists every recorded request the view lets through (reactions × recorded
   requests criteria checks per request: a sixth of the sandbox's time under load). Lacking: a public test of
   one request against a view (`View.sees(request)`, say), or public access to a handler's reactions
   (`Root._payloads`), a reaction's view (`Reaction._source`) and its depletion (`Reaction._disabled`).
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import parsing
from typing_extensions import override


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock reads `/api/v1/namespaces[/NAME[/status]]` as a namespace prefix: read it as the namespaces resource."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (len(parts) <= 4 or parts[4] in ("status", "finalize")):
        return parsing.ParsedPath("", "v1", "namespaces", None,
                                  parts[3] if len(parts) > 3 else None, parts[4] if len(parts) > 4 else None)
    return _kmock_parse_path(path)


_kmock_parse_path = parsing.parse_path
parsing.parse_path = _parse_path


def event_bus(emulator: kmock.KubernetesEmulator, resource: kmock.resource) -> kmock.Bus[Any]:
    """The bus that carries `resource`'s watch events (`{"type": ..., "object": ...}`) to every watch."""
    return emulator._buses[resource]


def write_lock(emulator: kmock.KubernetesEmulator) -> asyncio.Lock:
    """The lock an HTTP write holds from changing an object to putting its event on the bus."""
    return emulator._lock


def forget_requests(handler: kmock.RawHandler, keep: int) -> None:
    """Forget all but the last `keep` recorded requests (one may be between being recorded and being matched)
    and every reaction's record of the requests it served."""
    del handler._requests[:max(len(handler._requests) - keep, 0)]
    for reaction in handler._payloads:
        del reaction._requests[:]


def sees(view: kmock.View, request: kmock.Request) -> bool:
    """Whether `request` is among the requests `view` lets through: `request in view`, without listing them.

    The emulator's reactions see the root through filters and priorities, for which applying the filters to
    this one request gives the same answer; other views (groups, slices, exclusions) are asked as kmock asks."""
    while True:
        if isinstance(view, kmock.Filter):
            if not view.criteria(request):
                return False
        elif type(view) is not kmock.Priority:
            break
        view = view._source
    if isinstance(view, kmock.Root):
        return any(recorded is request for recorded in reversed(view._requests))
    return request in view


class ConstantTimeReactions(kmock.RawHandler):
    """`RawHandler._handle` with `sees` for its `request in reaction._source`. Placed after kmock's emulator
    among a handler's bases, it is the reaction loop the emulator's `_handle` calls last."""
    __slots__ = ()

    @override
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # As kmock orders them: by priority, highest first, shorter priorities padded with zeros; ties as added.
        width = max((len(reaction.priorities) for reaction in self._payloads), default=0)

        def rank(reaction: kmock.Reaction) -> tuple[float, ...]:
            return tuple(-p for p in reaction.priorities) + (0,) * (width - len(reaction.priorities))

        for reaction in sorted(self._payloads, key=rank):
            if sees(reaction._source, request) and not reaction._disabled.is_set():
                try:
                    return await reaction(request)
                except kmock.ReactionMismatchError:
                    reaction._disabled.set()
                except NotImplementedError:
                    pass
        raise NotImplementedError("no reaction matches the request")
