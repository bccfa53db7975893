"""The sandbox's Kubernetes API: kmock's emulator, made faithful where the operator and kubectl can tell.

kmock stores objects as plain JSON and merges patches. A real API server also stamps metadata (uid,
resourceVersion, generation, creationTimestamp), keeps `status` apart when a resource has the status
subresource, serves CRDs it is given, names the kind of a list, filters lists and watches by selector, ends a
watch after its `timeoutSeconds` and answers `kubectl get` with a Table. Those are added here, with two lookups
made to cost the same however long the sandbox runs (an object by its key, a request's reaction by its filters);
everything else is kmock's. It uses kmock's public API and overrides the methods kmock's emulator serves through
(`_handle`, `_serve_*`); what kmock has no public API for is in `kmock_extension`.

The sandbox's own controllers (OSCAR simulator, job runner) change objects in-process through
`create`/`patch`/`delete`, which emit the same watch events as HTTP requests do.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import functools
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from typing_extensions import override

from oscar_batch_sandbox import kmock_extension

CRD_RESOURCE = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
PODS_RESOURCE = kmock.resource("", "v1", "pods")
DISRUPTION_TARGET = "DisruptionTarget"
EVICTION_API_MESSAGE = "Eviction API: evicting"
DEFAULT_GRACE_SECONDS = 30
REQUESTS_KEPT = 8
# A cluster without metrics-server serves no metrics.k8s.io; with it, kubectl resolves `nodes` there.
ABSENT_GROUPS = {"metrics.k8s.io"}
TABLE_ACCEPT = "as=Table"
# What the API server appends to a `generateName` (apimachinery's util/rand): five of these, no vowels, no 0, 1, 3.
GENERATED_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def as_resource(resource: str | kmock.resource) -> kmock.resource:
    """kmock parses a resource's name anew on every call, with protocol checks that are slow in CPython."""
    return resource if isinstance(resource, kmock.resource) else kmock.resource(resource)


@attrs.define(kw_only=True)
class SandboxKubernetes(kmock.KubernetesEmulator, kmock_extension.ConstantTimeReactions):
    _revisions: Iterable[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _printer_columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _waiters: set[asyncio.Future[None]] = attrs.field(factory=set, init=False)
    # How many changes so far: a controller that was busy while one happened need not wait for the next.
    changes: int = attrs.field(default=0, init=False)
    # Resources that HTTP clients may not touch, as if RBAC denied them (the sandbox's own controllers may).
    forbidden: set[kmock.resource] = attrs.field(factory=set)

    def install_builtins(self) -> None:
        self.resources.load_bundled()
        for resource in list(self.resources):
            if resource.group in ABSENT_GROUPS:
                del self.resources[resource]

    # ---- in-process access for the sandbox's own controllers -------------------------------------

    def get(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (as_resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list(self, resource: str | kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        wanted = as_resource(resource)
        return [
            copy.deepcopy(obj.raw)
            for (res, ns, _), obj in self.objects.items()
            if res == wanted and not obj.deleted and (namespace is None or ns == namespace)
        ]

    async def create(self, resource: str | kmock.resource, obj: dict[str, Any]) -> None:
        resource = as_resource(resource)
        namespace = obj.get("metadata", {}).get("namespace")
        self._stamp_created(resource, namespace, obj)
        key = (resource, namespace, obj["metadata"]["name"])
        if resource == CRD_RESOURCE:
            self.register_crd(obj)
        async with kmock_extension.write_lock(self):
            if key in self.objects and not self.objects[key].deleted:
                raise kmock.KubernetesError(409, "AlreadyExists", f"{resource.plural} {key[2]!r} already exists")
            if key in self.objects:
                self.objects[key].create(obj)
            else:
                self.objects[key] = obj
            await kmock_extension.event_bus(self, resource).put({"type": "ADDED", "object": self.objects[key].raw})
        self._notify_change()

    async def patch(self, resource: str | kmock.resource, namespace: str | None, name: str,
                    patch: Mapping[str, Any]) -> None:
        resource = as_resource(resource)
        key = (resource, namespace, name)
        async with kmock_extension.write_lock(self):
            if key not in self.objects or self.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            patch = dict(patch)
            patch["metadata"] = dict(patch.get("metadata") or {}, resourceVersion=self._next_revision())
            self.objects[key].patch(patch)
            await kmock_extension.event_bus(self, resource).put({"type": "MODIFIED", "object": self.objects[key].raw})
        self._notify_change()

    async def delete(self, resource: str | kmock.resource, namespace: str | None, name: str) -> None:
        resource = as_resource(resource)
        key = (resource, namespace, name)
        async with kmock_extension.write_lock(self):
            if key not in self.objects or self.objects[key].deleted:
                return
            raw = self.objects[key].raw
            self.objects[key].delete()
            await kmock_extension.event_bus(self, resource).put({"type": "DELETED", "object": raw})
        self._notify_change()

    async def evict(self, namespace: str, name: str) -> None:
        """The Eviction API (`POST .../pods/NAME/eviction`), as the API server handles it when no
        PodDisruptionBudget stands in the way: the Pod gets the condition `DisruptionTarget` (reason
        EvictionByEvictionAPI) and is deleted gracefully. A Pod bound to a node is only marked
        (`deletionTimestamp`, `deletionGracePeriodSeconds`) for its kubelet to stop its containers and remove
        it; an unscheduled or finished Pod is removed at once."""
        pod = self.get(PODS_RESOURCE, namespace, name)
        if pod is None:
            raise kmock.KubernetesObjectNotFoundError()
        if pod.get("metadata", {}).get("deletionTimestamp"):
            return
        status = pod.get("status") or {}
        if not (pod.get("spec") or {}).get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            await self.delete(PODS_RESOURCE, namespace, name)
            return
        now = now_iso()
        conditions = [c for c in status.get("conditions") or () if c.get("type") != DISRUPTION_TARGET]
        conditions.append({"type": DISRUPTION_TARGET, "status": "True", "reason": "EvictionByEvictionAPI",
                           "message": EVICTION_API_MESSAGE, "lastProbeTime": None, "lastTransitionTime": now})
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        await self.patch(PODS_RESOURCE, namespace, name, {
            "metadata": {"deletionTimestamp": now, "deletionGracePeriodSeconds": grace},
            "status": {"conditions": conditions}})

    async def wait_for_change(self, timeout: float, since: int | None = None) -> None:
        """Wake up on the next change of any object, or after `timeout` seconds. Each waiter gets every change.
        With `since` (a value of `changes`), return at once if anything changed after it."""
        if since is not None and self.changes != since:
            return
        change = asyncio.get_running_loop().create_future()
        self._waiters.add(change)
        try:
            async with asyncio.timeout(timeout):
                await change
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(change)

    def count(self, resource: str | kmock.resource, namespace: str | None,
              predicate: Callable[[dict[str, Any]], bool]) -> int:
        """How many live objects satisfy `predicate`, which sees them as stored (no copies: it must not keep or
        change them). For frequent polls, where `list` would copy every object each time."""
        wanted = as_resource(resource)
        return sum(1 for (res, ns, _), obj in self.objects.items()
                   if res == wanted and not obj.deleted and (namespace is None or ns == namespace)
                   and predicate(obj.raw))

    def _notify_change(self) -> None:
        self.changes += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- CRDs --------------------------------------------------------------------------------

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs={"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources={"status"} if "status" in version.get("subresources", {}) else set(),
            )
            self._printer_columns[resource] = version.get("additionalPrinterColumns", [])
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                self._schemas[resource] = schema

    # ---- HTTP behaviour ------------------------------------------------------------------------

    def forget_history(self, keep_requests: int = REQUESTS_KEPT) -> None:
        """Drop recorded requests and past object versions: kmock keeps them for assertions, a long run must not.
        The last few requests stay: one may be between being recorded and being matched. Each reaction keeps
        the requests it served as well."""
        kmock_extension.forget_requests(self, keep_requests)
        for obj in self.objects.values():
            if len(obj.history) > 1:
                del obj.history[:-1]

    @override
    async def _handle(self, request: kmock.Request):
        if request.resource in self.forbidden:
            raise kmock.KubernetesError(403, "Forbidden", f"{request.resource.plural} is forbidden: the sandbox "
                                                          f"denies {request.resource.plural} to every client")
        content_type = request.headers.get("Content-Type", "")
        if request.body and "json" not in content_type:
            # kubectl sends protobuf for builtin kinds and falls back to JSON on 415, as with an old server.
            raise kmock.KubernetesError(415, "UnsupportedMediaType",
                                        f"the body of the request was in an unknown format: {content_type}")
        if request.resource == PODS_RESOURCE and request.subresource == "eviction" and request.name:
            return await self._serve_eviction(request)
        if request.resource is not None and isinstance(request.data, dict):
            if request.resource in self._schemas and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
                kept = prune_object(self._schemas[request.resource], request.data)
                request.data.clear()
                request.data.update(kept)
            if request.action == kmock.action.CREATE:
                namespace = request.namespace or request.data.get("metadata", {}).get("namespace")
                self._stamp_created(request.resource, namespace, request.data)
                if request.resource == CRD_RESOURCE:
                    self.register_crd(request.data)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._stamp_updated(request)
        try:
            return await super()._handle(request)
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as error:
            # As the API server answers a JSON patch whose `test` fails (kopf's optimistic finalizer patches).
            raise kmock.KubernetesError(422, "Invalid", f"the server rejected our request due to an error in our "
                                                        f"request: {error}") from None
        finally:
            if request.action in (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE):
                self._notify_change()

    async def _serve_eviction(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """POST an `policy/v1` Eviction for a Pod: 201 with a Status of Success, as the API server answers."""
        if request.method != kmock.method.POST:
            raise kmock.KubernetesError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                                 "requested resource")
        body = request.data if isinstance(request.data, dict) else {}
        if body.get("kind") not in (None, "Eviction"):
            raise kmock.KubernetesError(400, "BadRequest", f"expected an Eviction, got {body.get('kind')}")
        namespace = request.namespace or "default"
        try:
            await self.evict(namespace, request.name)
        except kmock.KubernetesObjectNotFoundError:
            raise kmock.KubernetesError(404, "NotFound", f'pods "{request.name}" not found') from None
        return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                          "status": "Success", "code": 201}, status=201)

    def _stamp_created(self, resource: kmock.resource, namespace: str | None, obj: dict[str, Any]) -> None:
        info = self.resources[resource] if resource in self.resources else None  # noqa: SIM401 - not a dict
        metadata = obj.setdefault("metadata", {})
        if info is not None and info.namespaced:
            metadata["namespace"] = namespace or "default"
        if "generateName" in metadata and "name" not in metadata:
            metadata["name"] = metadata["generateName"] + "".join(random.choices(GENERATED_NAME_ALPHABET, k=5))
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(),
                        resourceVersion=self._next_revision(), generation=1)
        if resource.plural == "secrets" and resource.group == "":
            _encode_string_data(obj)
        if info is not None and info.kind:
            obj.setdefault("kind", info.kind)
            obj.setdefault("apiVersion", f"{resource.group}/{resource.version}".lstrip("/"))

    def _stamp_updated(self, request: kmock.Request) -> None:
        """Keep status and the rest apart, as a real API server does for resources with /status."""
        patch = request.data
        resource = request.resource
        info = self.resources[resource] if resource in self.resources else None  # noqa: SIM401 - not a dict
        has_status = info is not None and "status" in info.subresources
        if request.subresource == "status":
            for field in list(patch):
                if field not in ("status", "metadata", "apiVersion", "kind"):
                    del patch[field]
        elif has_status:
            patch.pop("status", None)
        metadata = patch.setdefault("metadata", {}) if isinstance(patch.get("metadata"), dict | None) else {}
        for immutable in ("uid", "creationTimestamp", "generation", "name", "namespace"):
            metadata.pop(immutable, None)
        metadata["resourceVersion"] = self._next_revision()
        if resource.plural == "secrets" and resource.group == "" and "stringData" in patch:
            _encode_string_data(patch)
        if "spec" in patch and request.subresource is None:
            current = self.get(resource, request.namespace, request.name)
            if current is not None and _merged(current.get("spec", {}), patch["spec"]) != current.get("spec", {}):
                metadata["generation"] = current["metadata"].get("generation", 1) + 1

    def _stored(self, resource: kmock.resource | None, namespace: str | None, name: str | None) -> kmock.Object:
        """The one object a request names, by its key. kmock scans every object it ever held for it (deleted ones
        included), which made each status patch cost as much as the Jobs of every batch that ran before."""
        key = (resource, namespace, name)
        if key not in self.objects:   # an ObjectsArray, which has no get()
            raise kmock.KubernetesObjectNotFoundError()
        return self.objects[key]

    def _next_revision(self) -> str:
        return str(next(self._revisions))

    @override
    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        discovery = await super()._serve_version(request)
        discovery["groupVersion"] = discovery["groupVersion"].lstrip("/")  # the core group is "v1", not "/v1"
        for entry in discovery["resources"]:
            if "/" in entry["name"]:  # short names belong to the resource, not to its subresources
                entry.update(shortNames=[], categories=[])
        return discovery

    @override
    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        listing = await super()._serve_list(request)
        items = listing["items"]
        selector = request.params.get("labelSelector")
        if selector:
            requirements = parse_label_selector(selector)
            items = [obj for obj in items if matches_labels(obj.get("metadata", {}).get("labels") or {}, requirements)]
        fields = request.params.get("fieldSelector")
        if fields:
            items = [obj for obj in items if matches_fields(obj, fields)]
        if TABLE_ACCEPT in request.headers.get("Accept", ""):
            return self._table(request.resource, items)
        info = self.resources[request.resource]
        return {
            "apiVersion": f"{request.resource.group}/{request.resource.version}".lstrip("/"),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": self._next_revision()},
            "items": items,
        }

    @override
    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        """A real API server's watch: the objects changed since the `resourceVersion` asked for, then every change,
        both through the selectors, until `timeoutSeconds`. kmock's replays every object and joins its event bus
        only after streaming them, so a change made meanwhile was never sent; here the bus is joined under the
        lock that writers hold, in the same instant as the objects are read."""
        yield b""  # the headers go out at once, as kmock does: a client waits for them before anything happens
        since = _revision(request.params.get("resourceVersion"))
        selector = request.params.get("labelSelector")
        requirements = parse_label_selector(selector) if selector else []
        fields = request.params.get("fieldSelector")
        timeout = request.params.get("timeoutSeconds")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout) if timeout else None

        def wanted(obj: dict[str, Any]) -> bool:
            return (matches_labels(obj.get("metadata", {}).get("labels") or {}, requirements)
                    and (not fields or matches_fields(obj, fields)))

        bus = kmock_extension.event_bus(self, request.resource)
        async with kmock_extension.write_lock(self):
            marker = await bus.mark()
            changed = [{"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                       for (resource, namespace, name), obj in self.objects.items()
                       if not obj.deleted and _in_scope(request, resource, namespace, name)
                       and _revision(obj.raw.get("metadata", {}).get("resourceVersion")) > since]
        try:
            for event in changed:
                if wanted(event["object"]):
                    yield event
            events = aiter(bus.stream(since=marker))
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(anext(events), remaining)
                except TimeoutError:
                    return
                metadata = event.get("object", {}).get("metadata", {})
                if _in_scope(request, request.resource, metadata.get("namespace"), metadata.get("name")) \
                        and wanted(event["object"]):
                    yield event
        finally:
            await bus.unmark(marker)

    @override
    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        obj = self._stored(request.resource, request.namespace, request.name)
        if obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        if TABLE_ACCEPT in request.headers.get("Accept", ""):
            return self._table(request.resource, [obj.raw])
        return obj.raw

    @override
    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        # Stored by kmock's `_handle` under the namespace and name of the body when the path has none.
        metadata = request.data.get("metadata", {})
        return self._stored(request.resource, request.namespace or metadata.get("namespace"),
                            request.name or metadata.get("name")).raw

    @override
    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        # The state the object was left in, even when the update released it (its last finalizer removed).
        return self._stored(request.resource, request.namespace, request.name).last.raw

    @override
    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return self._stored(request.resource, request.namespace, request.name).last.raw

    def _table(self, resource: kmock.resource, objs: list[dict[str, Any]]) -> dict[str, Any]:
        columns, cells = table_columns(resource, self._printer_columns.get(resource))
        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": self._next_revision()},
            "columnDefinitions": [
                {"name": name, "type": kind, "format": "name" if name == "Name" else "",
                 "description": "", "priority": priority}
                for name, kind, priority in columns
            ],
            "rows": [
                {"cells": cells(obj), "object": {
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": obj.get("metadata", {})}}
                for obj in objs
            ],
        }


def _in_scope(request: kmock.Request, resource: kmock.resource, namespace: str | None, name: str | None) -> bool:
    """Whether a list or watch request covers an object: its resource, in its namespace unless the request is
    cluster-wide, by its name if the request names one."""
    return (resource == request.resource and (request.namespace is None or namespace == request.namespace)
            and (request.name is None or name == request.name))


def _revision(version: str | None) -> int:
    return int(version) if version and version.isdigit() else 0


def _encode_string_data(secret: dict[str, Any]) -> None:
    """A Secret's `stringData` is write-only: the API server stores it base64-encoded in `data`."""
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {})
    data.update({key: base64.b64encode(value.encode()).decode() for key, value in string_data.items()})


def prune_object(schema: Mapping[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the API server stores of a custom resource (or a merge patch of one) under its CRD's structural
    schema: `apiVersion`, `kind` and `metadata` as they are, every other field only where the schema names it."""
    envelope = {key: obj[key] for key in ("apiVersion", "kind", "metadata") if key in obj}
    rest = {key: value for key, value in obj.items() if key not in envelope}
    return {**envelope, **prune(schema, rest)}


def prune(schema: Mapping[str, Any] | None, value: Any) -> Any:
    """A value as a structural schema keeps it: an object's fields the schema does not name are dropped unless
    it preserves unknown fields; `null` (a merge patch's removal) stays."""
    if schema is None:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        kept = {}
        for key, item in value.items():
            if key in properties:
                kept[key] = prune(properties[key], item)
            elif isinstance(additional, dict):
                kept[key] = prune(additional, item)
            elif preserve:
                kept[key] = item
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item) for item in value]
    return value


def _merged(current: Any, patch: Any) -> Any:
    if not isinstance(current, dict) or not isinstance(patch, dict):
        return patch
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merged(current.get(key), value)
    return merged


# ---- label selectors -------------------------------------------------------------------------

def parse_label_selector(selector: str) -> list[tuple[str, str, frozenset[str]]]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` into (key, operator, values) requirements."""
    requirements = []
    for term in _split_terms(selector):
        term = term.strip()
        if not term:
            continue
        if " in " in f" {term} " and "(" in term:
            key, _, rest = term.partition(" ")
            operator, _, values = rest.strip().partition("(")
            requirements.append((key, operator.strip(), frozenset(v.strip() for v in values.rstrip(")").split(","))))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            requirements.append((key.strip(), "!=", frozenset([value.strip()])))
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            requirements.append((key.strip(), "=", frozenset([value.strip()])))
        elif term.startswith("!"):
            requirements.append((term[1:].strip(), "!", frozenset()))
        else:
            requirements.append((term, "exists", frozenset()))
    return requirements


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [*terms, current]


def matches_labels(labels: Mapping[str, str], requirements: list[tuple[str, str, frozenset[str]]]) -> bool:
    for key, operator, values in requirements:
        present = key in labels
        ok = {
            "=": present and labels[key] in values,
            "in": present and labels[key] in values,
            "!=": not present or labels[key] not in values,
            "notin": not present or labels[key] not in values,
            "exists": present,
            "!": not present,
        }[operator]
        if not ok:
            return False
    return True


def matches_fields(obj: Mapping[str, Any], selector: str) -> bool:
    """Field selectors (`spec.nodeName=w1,status.phase!=Failed`): equality on any dotted path, as strings."""
    for term in selector.split(","):
        negate = "!=" in term
        path, _, wanted = term.replace("!=", "=").replace("==", "=").partition("=")
        value = json_path(obj, path)
        actual = "" if value is None else str(value)
        if (actual == wanted) == negate:
            return False
    return True


# ---- Table rendering for `kubectl get` -------------------------------------------------------

def human_age(timestamp: str | None) -> str:
    """kubectl's short duration format (`45s`, `3m12s`, `5h`, `2d`)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    return f"{days}d"


def json_path(obj: Any, path: str) -> Any:
    """Evaluate the simple `.a.b.c` JSONPaths that printer columns use."""
    for part in path.strip().lstrip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _age(obj: dict[str, Any]) -> str:
    return human_age(obj.get("metadata", {}).get("creationTimestamp"))


def _node_status(node: dict[str, Any]) -> str:
    ready = next((c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    return status + (",SchedulingDisabled" if node.get("spec", {}).get("unschedulable") else "")


def _node_roles(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix):] for k in node.get("metadata", {}).get("labels", {}) if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{len(pod.get('spec', {}).get('containers', []))}"


def _job_status(job: dict[str, Any]) -> str:
    conditions = {c["type"] for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"}
    for terminal in ("Complete", "Failed"):
        if terminal in conditions:
            return terminal
    return "Running" if job.get("status", {}).get("active") else "Pending"


_BUILTIN_COLUMNS: dict[str, list[tuple[str, str, int, Any]]] = {
    "nodes": [("Status", "string", 0, _node_status), ("Roles", "string", 0, _node_roles),
              ("Age", "string", 0, _age),
              ("Version", "string", 0, lambda n: n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""))],
    "pods": [("Ready", "string", 0, _pod_ready),
             ("Status", "string", 0, lambda p: p.get("status", {}).get("phase", "Pending")),
             ("Restarts", "integer", 0, lambda p: 0), ("Age", "string", 0, _age),
             ("Node", "string", 1, lambda p: p.get("spec", {}).get("nodeName", "<none>"))],
    "events": [("Last Seen", "string", 0, lambda e: human_age(e.get("lastTimestamp") or e.get("eventTime")
                                                              or e.get("metadata", {}).get("creationTimestamp"))),
               ("Type", "string", 0, lambda e: e.get("type", "")),
               ("Reason", "string", 0, lambda e: e.get("reason", "")),
               ("Object", "string", 0, lambda e: "{}/{}".format(e.get("involvedObject", {}).get("kind", "").lower(),
                                                                 e.get("involvedObject", {}).get("name", ""))),
               ("Message", "string", 0, lambda e: e.get("message", ""))],
    "jobs": [("Status", "string", 0, _job_status),
             ("Completions", "string", 0,
              lambda j: f"{j.get('status', {}).get('succeeded', 0)}/{j.get('spec', {}).get('completions', 1)}"),
             ("Age", "string", 0, _age)],
}


def table_columns(resource: kmock.resource, printer_columns: list[dict[str, Any]] | None):
    """Column definitions (name, type, priority) and a row renderer for one resource."""
    if printer_columns is not None:
        columns = [(c["name"], c.get("type", "string"), c.get("priority", 0),
                    _printer_cell(c)) for c in printer_columns]
        if not any(c["name"] == "Age" for c in printer_columns):
            columns.append(("Age", "date", 0, _age))
    else:
        columns = _BUILTIN_COLUMNS.get(resource.plural, [("Age", "string", 0, _age)])
    # Like the API server's event printer, `kubectl get events` shows names only with `-o wide`.
    name_priority = 1 if resource.plural == "events" else 0
    definitions = [("Name", "string", name_priority)] + [(name, kind, priority) for name, kind, priority, _ in columns]

    def cells(obj: dict[str, Any]) -> list[Any]:
        return [obj.get("metadata", {}).get("name", "")] + [render(obj) for _, _, _, render in columns]

    return definitions, cells


def _printer_cell(column: Mapping[str, Any]):
    def render(obj: dict[str, Any]) -> Any:
        value = json_path(obj, column["jsonPath"])
        if value is None:
            return None       # as the API server: a null cell, which kubectl prints blank
        return human_age(value) if column.get("type") == "date" else value
    return render
