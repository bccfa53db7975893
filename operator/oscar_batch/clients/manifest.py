"""The manifest in S3 (`minio`): the inputs of a batch, one object key per line, in listing order.

The listing streams through the spec's filters into a spooled temporary file, so a bucket of millions of
objects is never one Python list. The manifest and the results manifest record which batch wrote them (UID,
namespace/name, and the manifest's item count) in their S3 metadata: a restarted operator reuses its own
manifest instead of listing again, refuses a manifest key another unfinished batch owns, and never overwrites
an object no batch wrote.
"""
from __future__ import annotations

import dataclasses
import io
import json
import tempfile
import urllib.parse
from collections.abc import Iterator
from typing import Any

import minio
from minio.error import S3Error

from oscar_batch.core.spec import BatchSpec

UID_META, BATCH_META, ITEMS_META = "oscar-batch-uid", "oscar-batch-name", "oscar-batch-items"
SPOOL_BYTES = 16 * 1024 * 1024
# S3's answers for an object that is not there.
MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


class StorageError(Exception):
    """S3 refused or failed; the message says what and where, never with credentials."""


@dataclasses.dataclass(frozen=True)
class ObjectOwner:
    """Who wrote an object the batch wants to write: a batch (uid set) or somebody else (uid None)."""
    uid: str | None
    batch: str      # namespace/name, "?" when unknown
    items: int


def client(spec: BatchSpec, access_key: str, secret_key: str) -> minio.Minio:
    url = urllib.parse.urlsplit(spec.s3_endpoint)
    return minio.Minio(url.netloc, access_key=access_key, secret_key=secret_key,
                       secure=url.scheme == "https", region=spec.s3_region)


def bucket_exists(s3: minio.Minio, spec: BatchSpec) -> bool:
    try:
        return s3.bucket_exists(spec.bucket)
    except S3Error as error:
        raise _storage_error(error, f"reading bucket {spec.bucket}") from None


def owner(s3: minio.Minio, spec: BatchSpec, key: str) -> ObjectOwner | None:
    """Who wrote the object at `key`, or None when there is no object there."""
    try:
        stat = s3.stat_object(spec.bucket, key)
    except S3Error as error:
        if error.code in MISSING:
            return None
        raise _storage_error(error, f"reading {spec.uri(key)}") from None
    metadata = {name.lower(): value for name, value in (stat.metadata or {}).items()}
    uid = metadata.get(f"x-amz-meta-{UID_META}") or None
    try:
        items = int(metadata.get(f"x-amz-meta-{ITEMS_META}", "0"))
    except ValueError:
        items = 0
    return ObjectOwner(uid=uid, batch=metadata.get(f"x-amz-meta-{BATCH_META}", "?"), items=items)


def remove(s3: minio.Minio, spec: BatchSpec, key: str) -> None:
    try:
        s3.remove_object(spec.bucket, key)
    except S3Error as error:
        raise _storage_error(error, f"removing {spec.uri(key)}") from None


class Listing:
    """How far a listing has got, read from another thread while it runs (plain int assignments, atomic in
    CPython); `stop()` makes it end at the next key with ListingStopped."""

    def __init__(self) -> None:
        self.listed = 0       # objects under the prefix, before the filters
        self.inputs = 0       # of those, the inputs
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True


class ListingStopped(Exception):
    """The listing was stopped before it ended (the batch is going away)."""


def write(s3: minio.Minio, spec: BatchSpec, batch_uid: str, batch: str, listing: Listing | None = None) -> int:
    """List the inputs into the manifest object (`listing` tells how far it got meanwhile). Returns the number
    of inputs."""
    listing = listing or Listing()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for key in inputs(s3, spec, listing):
            spool.write(key.encode() + b"\n")
        size = spool.tell()
        spool.seek(0)
        metadata: dict[str, str | list[str] | tuple[str]] = {UID_META: batch_uid, BATCH_META: batch,
                                                             ITEMS_META: str(listing.inputs)}
        _put(s3, spec, spec.manifest_key, spool, size, "text/plain", metadata)
    return listing.inputs


def inputs(s3: minio.Minio, spec: BatchSpec, listing: Listing | None = None) -> Iterator[str]:
    """The keys of the batch's inputs, in listing order: what the manifest lists, line by line."""
    listing = listing or Listing()
    try:
        for obj in s3.list_objects(spec.bucket, prefix=spec.prefix, recursive=True):
            if listing.stopping:
                raise ListingStopped(f"listing s3://{spec.bucket}/{spec.prefix} stopped after {listing.listed} keys")
            listing.listed += 1
            if not obj.is_dir and spec.is_input(obj.object_name):
                listing.inputs += 1
                yield obj.object_name
    except S3Error as error:
        raise _storage_error(error, f"listing s3://{spec.bucket}/{spec.prefix}") from None


def keys_at(s3: minio.Minio, spec: BatchSpec, lines: set[int]) -> dict[int, str]:
    """The input keys at these 1-based manifest lines, read by streaming the manifest once."""
    found: dict[int, str] = {}
    last = max(lines, default=0)
    try:
        response = s3.get_object(spec.bucket, spec.manifest_key)
    except S3Error as error:
        raise _storage_error(error, f"reading {spec.uri(spec.manifest_key)}") from None
    try:
        for number, line in enumerate(_lines(response), 1):
            if number in lines:
                found[number] = line
            if number >= last:
                break
    finally:
        response.close()
        response.release_conn()
    return found


def _lines(response: Any) -> Iterator[str]:
    pending = b""
    for chunk in response.stream(1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode()
    if pending:
        yield pending.decode()


def read_results(s3: minio.Minio, spec: BatchSpec, key: str) -> Any:
    """The results document at `key` (JSON), None when there is none; ValueError when it is not JSON."""
    try:
        response = s3.get_object(spec.bucket, key)
    except S3Error as error:
        if error.code in MISSING:
            return None
        raise _storage_error(error, f"reading {spec.uri(key)}") from None
    try:
        return json.loads(response.read())
    finally:
        response.close()
        response.release_conn()


def write_results(s3: minio.Minio, spec: BatchSpec, batch_uid: str, batch: str, results: dict[str, Any]) -> None:
    body = json.dumps(results, separators=(",", ":")).encode()
    _put(s3, spec, spec.results_key, io.BytesIO(body), len(body), "application/json",
         {UID_META: batch_uid, BATCH_META: batch})


def _put(s3: minio.Minio, spec: BatchSpec, key: str, data: Any, size: int, content_type: str,
         metadata: dict[str, str | list[str] | tuple[str]]) -> None:
    try:
        s3.put_object(spec.bucket, key, data, size, content_type=content_type, metadata=metadata)
    except S3Error as error:
        raise _storage_error(error, f"writing {spec.uri(key)}") from None


def _storage_error(error: S3Error, doing: str) -> StorageError:
    return StorageError(f"{doing}: S3 answered {error.code}: {error.message}")
