"""The OscarBatchJob spec as a typed value: defaults applied, every field checked. Pure.

The CRD's schema rejects most bad input at `kubectl apply`; this repeats the checks an API server without
that schema (or an older CRD) would let through, and names the field in every error.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping
from typing import Any

SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ENDPOINT = re.compile(r"^https?://[^\s/]+(/.*)?$")
DEFAULT_SERVICES_NAMESPACE = "oscar-svc"
DEFAULT_MANIFEST_NAME = "index.txt"
RESULTS_SUFFIX = ".results.json"


class SpecError(ValueError):
    """A spec field is missing or wrong; the message names the field."""


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    service: str
    oscar_endpoint: str
    oscar_secret: str
    services_namespace: str
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

    def is_input(self, key: str) -> bool:
        """Whether an object listed under the prefix is an input. The batch's own objects never are."""
        if key in (self.manifest_key, self.results_key):
            return False
        relative = key[len(self.prefix):]
        if self.include and not any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.include):
            return False
        return not any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.exclude)


def parse_spec(spec: Mapping[str, Any]) -> BatchSpec:
    oscar = _mapping(spec, "oscar")
    storage = _mapping(spec, "storage")
    prefix = _string(storage, "prefix", "storage.prefix", default="", allow_empty=True)
    manifest_key = _string(spec, "manifestKey", "manifestKey", default=prefix + DEFAULT_MANIFEST_NAME)
    results_key = _string(spec, "resultsKey", "resultsKey", default=manifest_key + RESULTS_SUFFIX)
    if manifest_key == results_key:
        raise SpecError("spec.manifestKey and spec.resultsKey must name different objects")
    parsed = BatchSpec(
        service=_matching(spec, "service", "service", SERVICE_NAME, max_length=39,
                          rule="lowercase letters, digits and '-', at most 39 characters"),
        oscar_endpoint=_matching(oscar, "endpoint", "oscar.endpoint", ENDPOINT, rule="an http(s) URL"),
        oscar_secret=_string(oscar, "credentialsSecret", "oscar.credentialsSecret"),
        services_namespace=_string(oscar, "servicesNamespace", "oscar.servicesNamespace",
                                   default=DEFAULT_SERVICES_NAMESPACE),
        s3_endpoint=_matching(storage, "endpoint", "storage.endpoint", ENDPOINT, rule="an http(s) URL"),
        s3_region=_string(storage, "region", "storage.region", default="us-east-1"),
        s3_secret=_string(storage, "credentialsSecret", "storage.credentialsSecret"),
        bucket=_matching(storage, "bucket", "storage.bucket", BUCKET_NAME,
                         rule="3-63 lowercase letters, digits, '.' and '-', starting and ending alphanumeric"),
        prefix=prefix,
        include=_patterns(storage, "include"),
        exclude=_patterns(storage, "exclude"),
        manifest_key=manifest_key,
        results_key=results_key,
        items_per_invocation=_integer(spec, "itemsPerInvocation", minimum=0, default=0),
        max_parallelism=_integer(spec, "maxParallelism", minimum=0, default=0),
        headroom=_headroom(spec),
        retries=_integer(spec, "retries", minimum=0, default=2),
        tolerated_failures=_integer(spec, "toleratedFailures", minimum=0, default=0),
        suspend=_boolean(spec, "suspend", default=False),
    )
    if ".." in parsed.bucket:
        raise SpecError("spec.storage.bucket cannot contain two adjacent periods")
    return parsed


def _mapping(spec: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = spec.get(field)
    if not isinstance(value, Mapping):
        raise SpecError(f"spec.{field} is required and must be an object")
    return value


def _string(spec: Mapping[str, Any], field: str, path: str, default: str | None = None,
            allow_empty: bool = False) -> str:
    value = spec.get(field, default)
    if value is None:
        raise SpecError(f"spec.{path} is required")
    if not isinstance(value, str) or (not value and not allow_empty):
        raise SpecError(f"spec.{path} must be a non-empty string")
    return value


def _matching(spec: Mapping[str, Any], field: str, path: str, pattern: re.Pattern[str], rule: str,
              max_length: int = 2048) -> str:
    value = _string(spec, field, path)
    if len(value) > max_length or not pattern.fullmatch(value):  # `$` alone lets a trailing newline in
        raise SpecError(f"spec.{path} {value!r} is invalid: it must be {rule}")
    return value


def _integer(spec: Mapping[str, Any], field: str, minimum: int, default: int) -> int:
    value = spec.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"spec.{field} must be an integer >= {minimum}, got {value!r}")
    return value


def _boolean(spec: Mapping[str, Any], field: str, default: bool) -> bool:
    value = spec.get(field, default)
    if not isinstance(value, bool):  # bool("false") is True: a string would suspend the batch silently
        raise SpecError(f"spec.{field} must be true or false, got {value!r}")
    return value


def _headroom(spec: Mapping[str, Any]) -> float:
    value = spec.get("capacityHeadroom", 0.8)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise SpecError(f"spec.capacityHeadroom must be a number in (0, 1], got {value!r}")
    return float(value)


def _patterns(storage: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = storage.get(field, [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise SpecError(f"spec.storage.{field} must be a list of non-empty glob patterns")
    return tuple(value)
