"""The OscarBatchJob spec as a typed value: defaults applied, every field checked. Pure.

The CRD's schema rejects most bad input at `kubectl apply`; this repeats every bound it states, for an API
server without that schema (or an older CRD), and names the field in every error. It also pins the fields
that cannot change once a batch has started, for API servers that do not run the CRD's CEL rule.
"""
from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from oscar_batch.core import keys
from oscar_batch.core.outputs import MAX_TEMPLATES, OutputsSpec, sample_outputs, template_problem
from oscar_batch.core.redaction import redact

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Bucket names the minio client refuses whatever the endpoint, with a ValueError before any request.
BUCKET_IP_ADDRESS = re.compile(r"^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$")
BUCKET_FORBIDDEN_RUNS = ("..", ".-", "-.")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3")
ENDPOINT = re.compile(r"^https?://[^\s/]+(/.*)?$")
# The S3 client takes a host (a name, IPv4 or [IPv6]) and a port, nothing else: no path, user, query or fragment.
S3_ENDPOINT = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#@\[\]:]+)(:[0-9]{1,5})?/?$")
S3_REGION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")  # what the S3 client accepts
# Beyond the CRD's patterns: no user info (credentials come from Secrets only, and `user@` hides the real host
# from a reader), no query or fragment (the clients append paths to the endpoint: a `?` or `#` would swallow them).
ENDPOINT_EXTRAS = re.compile(r"^[^/]*//[^/]*@|[?#]")
# Where OSCAR creates a service's Jobs when neither the spec nor the service definition names a namespace.
DEFAULT_SERVICES_NAMESPACE = "oscar-svc"
DEFAULT_MANIFEST_NAME = "index.txt"
RESULTS_SUFFIX = ".results.json"
UNLISTED_SUFFIX = ".unlisted.json"
SKIPPED_SUFFIX = ".skipped.json"
MAX_KEY_LENGTH = 1024  # S3 object keys
MAX_SECRET_NAME_LENGTH = 253  # a DNS subdomain
MAX_URL_LENGTH = 2048
MAX_PATTERNS = 64
# Input names the outputs' placement is checked with (relative to storage.prefix).
OUTPUT_CHECK_SAMPLES = ("frame.jpg", "frame.png", "frame", "day/frame.jpg", "frame.tar.gz")


class SpecError(ValueError):
    """A spec field is missing or wrong; the message names the field."""


IN_CLUSTER, REMOTE = "InCluster", "Remote"
ACCESS_MODES = (IN_CLUSTER, REMOTE)
SINGLE_CLUSTER = "oscar"   # the name status gives the one cluster of `spec.oscar`
MAX_CLUSTERS = 16
MAX_CLUSTER_NAME_LENGTH = 32


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """One OSCAR cluster the batch invokes its service on: `spec.oscar`, or an entry of `spec.clusters`."""
    name: str
    endpoint: str
    secret: str
    services_namespace: str | None   # an override; else the service definition's, else DEFAULT_SERVICES_NAMESPACE
    access: str = IN_CLUSTER         # InCluster: the operator reads its Nodes, Pods, Jobs; Remote: OSCAR's API only
    max_parallelism: int = 0         # this cluster's cap (0: none); spec.maxParallelism caps the batch

    @property
    def remote(self) -> bool:
        return self.access == REMOTE


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    service: str
    clusters: tuple[ClusterSpec, ...]   # where the service is invoked: one range plan over all of them
    s3_endpoint: str
    s3_region: str
    s3_secret: str
    bucket: str
    prefix: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    manifest_key: str
    results_key: str
    items_per_invocation: int
    max_parallelism: int
    headroom: float
    retries: int
    tolerated_failures: int
    suspend: bool
    redrive: int
    keep_manifest: bool
    keep_jobs: bool
    outputs: OutputsSpec | None = None   # declared outputs: inputs with theirs are done

    def uri(self, key: str) -> str:
        """`s3://bucket/key` of an object of this batch's bucket, for messages and status."""
        return f"s3://{self.bucket}/{key}"

    @property
    def unlisted_key(self) -> str:
        """The object naming every input left out of the manifest (`keys.unlistable`), written only if any is."""
        return self.manifest_key + UNLISTED_SUFFIX

    @property
    def skipped_key(self) -> str:
        """The object naming every input left out because its outputs exist, written only if any is."""
        return self.manifest_key + SKIPPED_SUFFIX

    def outputs_problem(self, outputs_prefix: str) -> str | None:
        """Why the declared outputs cannot go under `outputs_prefix`: outputs the input filters would take for
        inputs would be processed by the next run. None when they can."""
        if self.outputs is None or self.outputs.bucket != self.bucket:
            return None
        for sample in OUTPUT_CHECK_SAMPLES:
            for output in sample_outputs(self.outputs, sample):
                key = outputs_prefix + output
                if key.startswith(self.prefix) and self.is_input(key):
                    return (f"spec.outputs would write {self.uri(key)} (for an input {sample!r}), which the input "
                            f"prefix {self.prefix!r} and filters take for an input: outputs must never become the "
                            "next run's inputs; put the outputs (their prefix in spec.outputs) outside the inputs, "
                            "or exclude them")
        return None

    def is_input(self, key: str) -> bool:
        """Whether an object listed under the prefix is an input. The batch's own objects and directory markers
        never are."""
        if key in (self.manifest_key, self.results_key, self.unlisted_key, self.skipped_key) or \
                keys.is_directory_marker(key):
            return False
        relative = key[len(self.prefix):]
        if self.include and not any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.include):
            return False
        return not any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.exclude)


def parse_spec(spec: Mapping[str, Any]) -> BatchSpec:
    storage = _mapping(spec, "storage")
    prefix = _string(storage, "prefix", "storage.prefix", max_length=MAX_KEY_LENGTH, default="", allow_empty=True)
    # The defaults are checked too: a key longer than S3 allows could never be written.
    manifest_key = _string(spec, "manifestKey", "manifestKey", max_length=MAX_KEY_LENGTH,
                           default=prefix + DEFAULT_MANIFEST_NAME)
    results_key = _string(spec, "resultsKey", "resultsKey", max_length=MAX_KEY_LENGTH,
                          default=manifest_key + RESULTS_SUFFIX)
    if manifest_key == results_key:
        raise SpecError("spec.manifestKey and spec.resultsKey must name different objects")
    if results_key in (manifest_key + UNLISTED_SUFFIX, manifest_key + SKIPPED_SUFFIX):
        raise SpecError(f"spec.resultsKey cannot be {results_key!r}: the batch writes the inputs it leaves out of "
                        "the manifest there")
    parsed = BatchSpec(
        service=_matching(spec, "service", "service", DNS_LABEL, max_length=39,
                          rule="lowercase letters, digits and '-', starting and ending alphanumeric"),
        clusters=_clusters(spec),
        s3_endpoint=_s3_endpoint(storage),
        s3_region=_matching(storage, "region", "storage.region", S3_REGION, max_length=63, default="us-east-1",
                            rule="1-63 letters, digits, '-' and '_', starting and ending with a letter or digit"),
        s3_secret=_string(storage, "credentialsSecret", "storage.credentialsSecret",
                          max_length=MAX_SECRET_NAME_LENGTH),
        bucket=_bucket(storage),
        prefix=prefix,
        include=_patterns(storage, "include"),
        exclude=_patterns(storage, "exclude"),
        manifest_key=manifest_key,
        results_key=results_key,
        items_per_invocation=_integer(spec, "itemsPerInvocation", minimum=0, maximum=1_000_000, default=0),
        max_parallelism=_integer(spec, "maxParallelism", minimum=0, maximum=100_000, default=0),
        headroom=_headroom(spec),
        retries=_integer(spec, "retries", minimum=0, maximum=100, default=2),
        tolerated_failures=_integer(spec, "toleratedFailures", minimum=0, maximum=100_000_000, default=0),
        suspend=_boolean(spec, "suspend", default=False),
        redrive=_integer(spec, "redrive", minimum=0, maximum=1_000_000, default=0),
        keep_manifest=_boolean(spec, "keepManifest", default=False),
        keep_jobs=_boolean(spec, "keepJobs", default=False),
        outputs=_outputs(spec, default_bucket=_bucket(storage)),
    )
    if parsed.outputs is not None and parsed.outputs.prefix is not None and \
            (problem := parsed.outputs_problem(parsed.outputs.prefix)):
        raise SpecError(problem)
    return parsed


class _PinnedField(NamedTuple):
    key: str        # in status.pinned, spelled as in the spec
    attribute: str  # of BatchSpec
    path: str       # as users write it


# The fields the CRD's top-level CEL rule keeps unchanged once status.startTime is set: the manifest, its
# ranges and the objects they name all follow from them.
_PINNED_FIELDS = (
    _PinnedField("service", "service", "spec.service"),
    _PinnedField("bucket", "bucket", "spec.storage.bucket"),
    _PinnedField("prefix", "prefix", "spec.storage.prefix"),
    _PinnedField("include", "include", "spec.storage.include"),
    _PinnedField("exclude", "exclude", "spec.storage.exclude"),
    _PinnedField("manifestKey", "manifest_key", "spec.manifestKey"),
)
IMMUTABLE_FIELDS = (*(field.path for field in _PINNED_FIELDS), "spec.outputs")   # outputs: pinned_fields


def pinned_fields(spec: BatchSpec) -> dict[str, Any]:
    """The immutable fields of `spec` as JSON for `status.pinned`, written when the batch starts."""
    pinned: dict[str, Any] = {}
    for field in _PINNED_FIELDS:
        value = getattr(spec, field.attribute)
        pinned[field.key] = list(value) if isinstance(value, tuple) else value
    pinned["outputs"] = _outputs_json(spec.outputs)
    return pinned


def _outputs_json(outputs: OutputsSpec | None) -> dict[str, Any]:
    """`spec.outputs` as pinned: as the spec spells it, with the prefix resolved; {} when none are declared."""
    if outputs is None:
        return {}
    pinned: dict[str, Any] = {"bucket": outputs.bucket, "key": list(outputs.templates),
                              "skipExisting": outputs.skip_existing, "newerThanInput": outputs.newer_than_input}
    if outputs.prefix is not None:
        pinned["prefix"] = outputs.prefix
    if outputs.written_after is not None:
        pinned["writtenAfter"] = outputs.written_after.isoformat()
    return pinned


def apply_pinned(spec: BatchSpec, pinned: Mapping[str, Any] | None) -> tuple[BatchSpec, list[str]]:
    """`spec` with the values of `status.pinned` put back, and the fields that had changed (as `spec.x.y`).

    A key missing from `pinned` (a status written before it was pinned) keeps the live value. A resultsKey
    left to its default follows the pinned manifest key; an explicit one that now equals it is a SpecError.
    """
    if not pinned:
        return spec, []
    restored: dict[str, Any] = {}
    changed = []
    for field in _PINNED_FIELDS:
        if field.key not in pinned:
            continue
        value = pinned[field.key]
        value = tuple(value) if isinstance(value, list) else value
        if value != getattr(spec, field.attribute):
            restored[field.attribute] = value
            changed.append(field.path)
    if "outputs" in pinned:
        outputs = _outputs({"outputs": pinned["outputs"]}, default_bucket=spec.bucket) if pinned["outputs"] else None
        if outputs != spec.outputs:
            restored["outputs"] = outputs
            # A prefix left to its default is the one resolved when the batch started: no change.
            if not (spec.outputs is not None and outputs is not None and spec.outputs.prefix is None
                    and dataclasses.replace(spec.outputs, prefix=outputs.prefix) == outputs):
                changed.append("spec.outputs")
    if "manifest_key" in restored:
        # A resultsKey spelled out as its default cannot be told from the default; either way it follows.
        if spec.results_key == spec.manifest_key + RESULTS_SUFFIX:
            restored["results_key"] = restored["manifest_key"] + RESULTS_SUFFIX
        elif spec.results_key == restored["manifest_key"]:
            raise SpecError(f"spec.resultsKey {spec.results_key!r} is the manifest key the batch started with; "
                            "the results would overwrite the manifest")
        elif spec.results_key in (restored["manifest_key"] + UNLISTED_SUFFIX,
                                  restored["manifest_key"] + SKIPPED_SUFFIX):
            raise SpecError(f"spec.resultsKey {spec.results_key!r} is where the batch it started with writes the "
                            "inputs it leaves out of the manifest")
    return dataclasses.replace(spec, **restored), changed


def _clusters(spec: Mapping[str, Any]) -> tuple[ClusterSpec, ...]:
    """`spec.oscar` as the one cluster, or `spec.clusters`: exactly one of the two."""
    listed = spec.get("clusters")
    if listed is None:
        oscar = spec.get("oscar")
        if not isinstance(oscar, Mapping):
            raise SpecError("spec.oscar is required and must be an object (or spec.clusters, for several OSCAR "
                            "clusters)")
        return (_cluster(oscar, "oscar", SINGLE_CLUSTER),)
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_CLUSTERS:
        raise SpecError(f"spec.clusters must be a list of 1 to {MAX_CLUSTERS} clusters")
    if spec.get("oscar") is not None:
        raise SpecError("spec.oscar and spec.clusters: give one OSCAR cluster in spec.oscar or several in "
                        "spec.clusters, not both")
    clusters = []
    for index, entry in enumerate(listed):
        path = f"clusters[{index}]"
        if not isinstance(entry, Mapping):
            raise SpecError(f"spec.{path} must be an object")
        name = _matching(entry, "name", f"{path}.name", DNS_LABEL, max_length=MAX_CLUSTER_NAME_LENGTH,
                         rule="lowercase letters, digits and '-', starting and ending alphanumeric")
        clusters.append(_cluster(entry, path, name))
    names = [cluster.name for cluster in clusters]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise SpecError(f"spec.clusters names {', '.join(repeated)} more than once: each cluster needs a name of "
                        "its own")
    if sum(not cluster.remote for cluster in clusters) > 1:
        raise SpecError("spec.clusters has more than one InCluster cluster: the operator sees one Kubernetes "
                        "cluster, its own; give the others `access: Remote`")
    return tuple(clusters)


def _cluster(section: Mapping[str, Any], path: str, name: str) -> ClusterSpec:
    access = section.get("access", IN_CLUSTER)
    if access not in ACCESS_MODES:
        raise SpecError(f"spec.{path}.access must be {' or '.join(ACCESS_MODES)}, got {access!r}")
    return ClusterSpec(
        name=name,
        endpoint=_endpoint(section, f"{path}.endpoint", ENDPOINT, "an http(s) URL"),
        secret=_string(section, "credentialsSecret", f"{path}.credentialsSecret", max_length=MAX_SECRET_NAME_LENGTH),
        services_namespace=_matching(section, "servicesNamespace", f"{path}.servicesNamespace", DNS_LABEL,
                                     max_length=63, rule="a namespace name: lowercase letters, digits and '-'")
        if section.get("servicesNamespace") is not None else None,
        access=access,
        max_parallelism=_integer(section, "maxParallelism", minimum=0, maximum=100_000, default=0,
                                 path=f"{path}.maxParallelism"))


def _mapping(spec: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = spec.get(field)
    if not isinstance(value, Mapping):
        raise SpecError(f"spec.{field} is required and must be an object")
    return value


def _string(spec: Mapping[str, Any], field: str, path: str, *, max_length: int, default: str | None = None,
            allow_empty: bool = False) -> str:
    value = spec.get(field, default)
    if value is None:
        raise SpecError(f"spec.{path} is required")
    if not isinstance(value, str) or (not value and not allow_empty):
        raise SpecError(f"spec.{path} must be a non-empty string")
    if len(value) > max_length:
        raise SpecError(f"spec.{path} is {len(value)} characters long, more than the {max_length} allowed")
    return value


def _matching(spec: Mapping[str, Any], field: str, path: str, pattern: re.Pattern[str], *, rule: str,
              max_length: int, default: str | None = None) -> str:
    value = _string(spec, field, path, max_length=max_length, default=default)
    if not pattern.fullmatch(value):  # `$` alone lets a trailing newline in
        raise SpecError(f"spec.{path} {value!r} is invalid: it must be {rule}")
    return value


def _s3_endpoint(storage: Mapping[str, Any]) -> str:
    endpoint = _endpoint(storage, "storage.endpoint", S3_ENDPOINT, "an http(s) URL of a host and port, with no path")
    try:
        port = urllib.parse.urlsplit(endpoint).port   # also checks an [IPv6] address
    except ValueError as error:
        raise SpecError(f"spec.storage.endpoint {endpoint!r} is invalid: {error}") from None
    if port == 0:
        raise SpecError(f"spec.storage.endpoint {endpoint!r} is invalid: port 0")
    return endpoint


def _endpoint(section: Mapping[str, Any], path: str, pattern: re.Pattern[str], rule: str) -> str:
    value = _string(section, "endpoint", path, max_length=MAX_URL_LENGTH)
    if not pattern.fullmatch(value) or ENDPOINT_EXTRAS.search(value):
        # A refused URL may carry a password (`https://user:password@…`): status and Events show it redacted.
        raise SpecError(f"spec.{path} {redact(value)!r} is invalid: it must be {rule} without user info, query "
                        "or fragment")
    return value


def _bucket(storage: Mapping[str, Any], path: str = "storage.bucket") -> str:
    bucket = _matching(storage, "bucket", path, BUCKET_NAME, max_length=63,
                       rule="3-63 lowercase letters, digits, '.' and '-', starting and ending alphanumeric")
    if BUCKET_IP_ADDRESS.fullmatch(bucket):
        raise SpecError(f"spec.{path} {bucket!r} is invalid: it cannot look like an IP address")
    if any(run in bucket for run in BUCKET_FORBIDDEN_RUNS):
        raise SpecError(f"spec.{path} {bucket!r} is invalid: a period cannot be next to another "
                        "period or a hyphen")
    if bucket.endswith(BUCKET_RESERVED_SUFFIXES):
        raise SpecError(f"spec.{path} {bucket!r} is invalid: names ending in "
                        f"{' or '.join(BUCKET_RESERVED_SUFFIXES)} are reserved by S3")
    return bucket


def _integer(spec: Mapping[str, Any], field: str, minimum: int, maximum: int, default: int,
             path: str | None = None) -> int:
    value = spec.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise SpecError(f"spec.{path or field} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def _boolean(spec: Mapping[str, Any], field: str, default: bool, path: str | None = None) -> bool:
    value = spec.get(field, default)
    if not isinstance(value, bool):  # bool("false") is True: a string would suspend the batch silently
        raise SpecError(f"spec.{path or field} must be true or false, got {value!r}")
    return value


def _headroom(spec: Mapping[str, Any]) -> float:
    value = spec.get("capacityHeadroom", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise SpecError(f"spec.capacityHeadroom must be a number in (0, 1], got {value!r}")
    return float(value)


def _patterns(storage: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = storage.get(field, [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise SpecError(f"spec.storage.{field} must be a list of non-empty glob patterns")
    if len(value) > MAX_PATTERNS:
        raise SpecError(f"spec.storage.{field} has {len(value)} patterns, more than the {MAX_PATTERNS} allowed")
    if any(len(pattern) > MAX_KEY_LENGTH for pattern in value):
        raise SpecError(f"spec.storage.{field} has a pattern longer than {MAX_KEY_LENGTH} characters")
    return tuple(value)


def _outputs(spec: Mapping[str, Any], *, default_bucket: str) -> OutputsSpec | None:
    value = spec.get("outputs")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError("spec.outputs must be an object")
    templates = value.get("key")
    templates = [] if templates is None else [templates] if isinstance(templates, str) else templates
    if not isinstance(templates, list) or not all(isinstance(template, str) and template for template in templates):
        raise SpecError("spec.outputs.key must be a template such as \"{key}.json\", or a list of them")
    if len(templates) > MAX_TEMPLATES:
        raise SpecError(f"spec.outputs.key has {len(templates)} templates, more than the {MAX_TEMPLATES} allowed")
    for template in templates:
        if len(template) > MAX_KEY_LENGTH:
            raise SpecError(f"spec.outputs.key has a template longer than {MAX_KEY_LENGTH} characters")
        if problem := template_problem(template):
            raise SpecError(f"spec.outputs.key {problem}")
    bucket = _bucket(value, path="outputs.bucket") if value.get("bucket") is not None else default_bucket
    prefix = (_string(value, "prefix", "outputs.prefix", max_length=MAX_KEY_LENGTH, allow_empty=True)
              if value.get("prefix") is not None else None)
    return OutputsSpec(bucket=bucket, prefix=prefix, templates=tuple(templates),
                       skip_existing=_boolean(value, "skipExisting", default=True, path="outputs.skipExisting"),
                       written_after=_time(value, "writtenAfter", "outputs.writtenAfter"),
                       newer_than_input=_boolean(value, "newerThanInput", default=False,
                                                 path="outputs.newerThanInput"))


def _time(section: Mapping[str, Any], field: str, path: str) -> datetime.datetime | None:
    value = section.get(field)
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if not isinstance(value, str) or parsed is None or parsed.tzinfo is None:
        raise SpecError(f"spec.{path} must be a time with its offset, such as 2026-11-01T00:00:00Z, got {value!r}")
    return parsed
