"""The manifest in S3 (`minio`): the inputs of a batch, one object key per line, in listing order.

The listing streams through the spec's filters into a spooled temporary file, so a bucket of millions of
objects is never one Python list. An input whose key cannot be one line (`keys.unlistable`) is left out and
named, with the reason, in a JSON object beside the manifest (`<manifestKey>.unlisted.json`, written only when
there is one), from which the results name them all after any restart.

With outputs declared (`spec.outputs`, skipExisting), the output prefix is listed first, once, into an
`OutputIndex` (8-16 bytes an output), and the inputs it says are done are left out of the manifest: counted, and
named in `<manifestKey>.skipped.json` (a JSON array of keys, spooled like the manifest; written only when there
is one). Outputs in another bucket are read with the same endpoint and credentials.

The manifest and the results manifest record which batch wrote them (UID, namespace/name, and the manifest's
item and unlisted counts) in their S3 metadata: a restarted operator reuses its own manifest instead of listing
again, refuses a manifest key another unfinished batch owns, and never overwrites an object no batch wrote.
"""
from __future__ import annotations

import array
import dataclasses
import datetime
import io
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from typing import Any

import certifi
import minio
import urllib3
from minio.error import S3Error

from oscar_batch.core import keys, outputs
from oscar_batch.core.items import Lines
from oscar_batch.core.keys import Listing, Unlisted
from oscar_batch.core.outputs import OutputIndex, OutputsSpec
from oscar_batch.core.redaction import quote
from oscar_batch.core.spec import BatchSpec

UID_META, BATCH_META, ITEMS_META = "oscar-batch-uid", "oscar-batch-name", "oscar-batch-items"
UNLISTED_META, SKIPPED_META = "oscar-batch-unlisted", "oscar-batch-skipped"
SPOOL_BYTES = 16 * 1024 * 1024
# Seconds to connect and to wait for each read (the OSCAR client waits 15 s too), and further tries of a request
# that failed to connect or got a 5xx.
CONNECT_TIMEOUT, READ_TIMEOUT, RETRIES = 5.0, 15.0, 2
MINIO_POOL_SIZE = 10   # minio's own default
# Manifest lines between two byte offsets kept by `LineOffsets`: reading the keys of some lines reads at most this
# many more (a 1,000,000-line manifest keeps 977 offsets).
LINE_STRIDE = 1024
# Objects a look-up of outputs lists beyond twice the lines it asks about: past that the outputs are not named in
# the inputs' order (a template such as "{stem}/{dir}"), and the look-up gives up rather than list the prefix.
OUTPUTS_SLACK = 1000
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
    unlisted: int = 0   # inputs the manifest leaves out
    skipped: int = 0    # inputs the manifest leaves out because their outputs exist


def client(spec: BatchSpec, access_key: str, secret_key: str, *, pool_size: int = MINIO_POOL_SIZE,
           read_timeout: float = READ_TIMEOUT) -> minio.Minio:
    """A client of the batch's S3 endpoint that gives up in bounded time: minio's own defaults wait 5 minutes for
    a connection and for each read, 5 times over, and a stalled endpoint would hold an I/O thread all that
    while. It follows no redirect: a batch's S3 is the allow-listed endpoint, not wherever that points to.
    `pool_size`: the threads that may call this client at once (minio fixes it at 10; urllib3 discards the
    connections beyond it, "Connection pool is full")."""
    url = urllib.parse.urlsplit(spec.s3_endpoint)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, read_timeout), read=read_timeout),
        maxsize=pool_size, cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), redirect=0,
                              raise_on_redirect=False))
    return minio.Minio(url.netloc, access_key=access_key, secret_key=secret_key,
                       secure=url.scheme == "https", region=spec.s3_region, http_client=http)


def bucket_exists(s3: minio.Minio, spec: BatchSpec, bucket: str | None = None) -> bool:
    """Whether the batch's bucket (or `bucket`, on the same endpoint) exists."""
    bucket = bucket or spec.bucket
    try:
        return s3.bucket_exists(bucket)
    except S3Error as error:
        raise _storage_error(error, f"reading bucket {bucket}") from None


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
    return ObjectOwner(uid=uid, batch=metadata.get(f"x-amz-meta-{BATCH_META}", "?"),
                       items=_count(metadata, ITEMS_META), unlisted=_count(metadata, UNLISTED_META),
                       skipped=_count(metadata, SKIPPED_META))


def _count(metadata: dict[str, str], name: str) -> int:
    try:
        return int(metadata.get(f"x-amz-meta-{name}", "0"))
    except ValueError:
        return 0


def remove(s3: minio.Minio, spec: BatchSpec, key: str) -> None:
    try:
        s3.remove_object(spec.bucket, key)
    except S3Error as error:
        raise _storage_error(error, f"removing {spec.uri(key)}") from None


class ListingProgress:
    """How far a listing has got, read from another thread while it runs (plain int assignments, atomic in
    CPython); `stop()` makes it end at the next key with ListingStopped."""

    def __init__(self) -> None:
        self.listed = 0       # objects under the prefix, before the filters
        self.inputs = 0       # of those, the inputs (manifest lines and inputs left out)
        self.outputs = 0      # outputs listed under the output prefix, before the inputs
        self.skipped = 0      # inputs left out because their outputs exist
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True


class ListingStopped(Exception):
    """The listing was stopped before it ended (the batch is going away)."""


def write(s3: minio.Minio, spec: BatchSpec, batch_uid: str, batch: str,
          progress: ListingProgress | None = None) -> Listing:
    """List the inputs into the manifest object, those that cannot be a line into the unlisted-keys object, and
    with outputs declared those that have them into the skipped-keys object (`progress` tells how far it got)."""
    progress = progress or ListingProgress()
    listing = Listing()
    marks: dict[str, str | list[str] | tuple[str]] = {UID_META: batch_uid, BATCH_META: batch}
    outputs = spec.outputs
    index = output_index(s3, spec, progress) if outputs is not None and outputs.skip_existing else None
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as lines, \
            tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as unlisted, \
            tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as skipped:
        for key, reason, modified in inputs(s3, spec, progress):
            if index is not None and index.done(key[len(spec.prefix):], modified):
                skipped.write((b"," if listing.skipped else b"[") + json.dumps(key).encode())
                listing.skipped = progress.skipped = listing.skipped + 1
            elif reason is None:
                lines.write(keys.manifest_line(key))
                listing.items += 1
            else:
                entry = Unlisted(key, reason)
                unlisted.write((b"," if listing.unlisted else b"[") + json.dumps(entry.json()).encode())
                listing.left_out(entry)
        # Before the manifest: a manifest that says it leaves inputs out always has them beside it.
        if listing.unlisted:
            unlisted.write(b"]")
            _put_spooled(s3, spec, spec.unlisted_key, unlisted, "application/json", marks)
        if listing.skipped:
            skipped.write(b"]")
            _put_spooled(s3, spec, spec.skipped_key, skipped, "application/json", marks)
        _put_spooled(s3, spec, spec.manifest_key, lines, "text/plain",
                     {**marks, ITEMS_META: str(listing.items), UNLISTED_META: str(listing.unlisted),
                      SKIPPED_META: str(listing.skipped)})
    return listing


def output_index(s3: minio.Minio, spec: BatchSpec, progress: ListingProgress | None = None) -> OutputIndex:
    """The outputs under the declared output prefix, listed once (streamed) into a frozen `OutputIndex`."""
    progress = progress or ListingProgress()
    outputs = spec.outputs
    assert outputs is not None and outputs.prefix is not None, "outputs declared, their prefix resolved"
    index = OutputIndex(outputs)
    where = f"s3://{outputs.bucket}/{outputs.prefix}"
    try:
        for obj in s3.list_objects(outputs.bucket, prefix=outputs.prefix, recursive=True):
            if progress.stopping:
                raise ListingStopped(f"listing the outputs {where} stopped after {progress.outputs} keys")
            progress.outputs += 1
            index.add(obj.object_name[len(outputs.prefix):], obj.last_modified)
    except S3Error as error:
        raise _storage_error(error, f"listing the outputs {where}") from None
    return index.freeze()


def inputs(s3: minio.Minio, spec: BatchSpec,
           progress: ListingProgress | None = None) -> Iterator[tuple[str, str | None, datetime.datetime | None]]:
    """The keys of the batch's inputs in listing order, each with the reason it cannot be a manifest line
    (None: it is the next line) and when it was last modified."""
    progress = progress or ListingProgress()
    try:
        for obj in s3.list_objects(spec.bucket, prefix=spec.prefix, recursive=True):
            if progress.stopping:
                raise ListingStopped(f"listing s3://{spec.bucket}/{spec.prefix} stopped after {progress.listed} keys")
            progress.listed += 1
            if spec.is_input(obj.object_name):
                progress.inputs += 1
                yield obj.object_name, keys.unlistable(obj.object_name), obj.last_modified
    except S3Error as error:
        raise _storage_error(error, f"listing s3://{spec.bucket}/{spec.prefix}") from None


def unlisted_keys(s3: minio.Minio, spec: BatchSpec) -> list[Unlisted]:
    """Every input the manifest leaves out, from the object `write` put beside it; [] when there is none."""
    try:
        response = s3.get_object(spec.bucket, spec.unlisted_key)
    except S3Error as error:
        if error.code in MISSING:
            return []
        raise _storage_error(error, f"reading {spec.uri(spec.unlisted_key)}") from None
    try:
        entries = json.loads(response.read())
    except ValueError:
        entries = []
    finally:
        response.close()
        response.release_conn()
    return [found for entry in entries if (found := Unlisted.from_json(entry)) is not None] \
        if isinstance(entries, list) else []


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
            yield keys.key_of_line(line)
    if pending:
        yield keys.key_of_line(pending)


class LineOffsets:
    """Where every LINE_STRIDE-th line of the manifest begins, found by streaming it once (the first time the
    keys of some lines are asked for): from then on, the keys of lines [start, end) are one ranged GET of about
    (end - start + LINE_STRIDE) lines, not a read of the manifest from its start. One per batch and process."""

    def __init__(self, stride: int = LINE_STRIDE) -> None:
        self.stride = stride
        self._offsets: array.array[int] | None = None   # [i]: where line i * stride + 1 begins

    def keys_between(self, s3: minio.Minio, spec: BatchSpec, start: int, end: int) -> list[str]:
        """The input keys of manifest lines [start, end) (1-based; fewer when the manifest ends before)."""
        if end <= start:
            return []
        if self._offsets is None:
            self._offsets = _line_offsets(s3, spec, self.stride)
        offsets, stride = self._offsets, self.stride
        first = (start - 1) // stride
        if first >= len(offsets):
            return []
        after = (end - 2) // stride + 1   # the stride past the last line asked for
        length = offsets[after] - offsets[first] if after < len(offsets) else 0   # 0: to the end
        found: list[str] = []
        skip = start - 1 - first * stride
        response = _get(s3, spec, spec.manifest_key, offset=offsets[first], length=length)
        try:
            for index, line in enumerate(_lines(response)):
                if index >= skip:
                    found.append(line)
                    if len(found) == end - start:
                        break
        finally:
            response.close()
            response.release_conn()
        return found


def _line_offsets(s3: minio.Minio, spec: BatchSpec, stride: int) -> array.array[int]:
    offsets, position, line = array.array("Q", [0]), 0, 1
    response = _get(s3, spec, spec.manifest_key)
    try:
        for chunk in response.stream(1 << 16):
            found = chunk.find(b"\n")
            while found >= 0:
                line += 1
                if (line - 1) % stride == 0:
                    offsets.append(position + found + 1)
                found = chunk.find(b"\n", found + 1)
            position += len(chunk)
    finally:
        response.close()
        response.release_conn()
    if len(offsets) > 1 and offsets[-1] >= position:   # the manifest's last line break: no line begins there
        offsets.pop()
    return offsets


def _get(s3: minio.Minio, spec: BatchSpec, key: str, offset: int = 0, length: int = 0) -> Any:
    try:
        return s3.get_object(spec.bucket, key, offset=offset, length=length)
    except S3Error as error:
        raise _storage_error(error, f"reading {spec.uri(key)}") from None


def lines_with_outputs(s3: minio.Minio, spec: BatchSpec, declared: OutputsSpec, prefix: str,
                       offsets: LineOffsets, start: int, end: int) -> Lines | None:
    """Which of manifest lines [start, end) have their outputs under `prefix` (resolved: `declared.prefix`, or the
    service's). The keys from one ranged GET of the manifest, the outputs from one listing of the window of the
    output prefix their names fall in (and, when outputs must be newer than their inputs, one of the inputs'
    window). None when the outputs are not named in the inputs' order, so that the window would be the prefix."""
    input_keys = offsets.keys_between(s3, spec, start, end)
    if not input_keys:
        return Lines()
    relative = [key.removeprefix(spec.prefix) for key in input_keys]
    wanted = [name for each in relative for name in (outputs.output_names(declared.templates, each)
                                                     if declared.templates else outputs.default_candidates(each))]
    index, cap = OutputIndex(declared), 2 * len(wanted) + OUTPUTS_SLACK
    window = _window(s3, declared.bucket, prefix, min(wanted), max(map(_past, wanted)))
    for listed, (name, modified) in enumerate(window):
        if listed >= cap:
            return None
        index.add(name, modified)
    index.freeze()
    modified_at: dict[str, Any] = {}
    if declared.newer_than_input:
        modified_at = dict(_window(s3, spec.bucket, spec.prefix, min(relative), max(map(_past, relative))))
    found = Lines()
    for line, each in enumerate(relative, start):
        if index.done(each, modified_at.get(each)):
            found.add(line, line + 1)
    return found


def _past(name: str) -> str:
    """The first name after every name that begins with this one (S3 lists in code point order)."""
    last = ord(name[-1])
    return name[:-1] + chr(last + 1) if last < 0x10FFFF else name + chr(0x10FFFF)


def _window(s3: minio.Minio, bucket: str, prefix: str, low: str, past: str) -> Iterator[tuple[str, Any]]:
    """The objects under `prefix` named (after it) from `low` up to `past`, in order, each relative to the prefix
    with its last-modified time."""
    try:
        for obj in s3.list_objects(bucket, prefix=prefix, recursive=True, start_after=prefix + low[:-1]):
            name = obj.object_name.removeprefix(prefix)
            if name < low:
                continue
            if name >= past:
                return
            yield name, obj.last_modified
    except S3Error as error:
        raise _storage_error(error, f"listing s3://{bucket}/{prefix}") from None


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


def _put_spooled(s3: minio.Minio, spec: BatchSpec, key: str, spool: Any, content_type: str,
                 metadata: dict[str, str | list[str] | tuple[str]]) -> None:
    size = spool.tell()
    spool.seek(0)
    _put(s3, spec, key, spool, size, content_type, metadata)


def _put(s3: minio.Minio, spec: BatchSpec, key: str, data: Any, size: int, content_type: str,
         metadata: dict[str, str | list[str] | tuple[str]]) -> None:
    try:
        s3.put_object(spec.bucket, key, data, size, content_type=content_type, metadata=metadata)
    except S3Error as error:
        raise _storage_error(error, f"writing {spec.uri(key)}") from None


def _storage_error(error: S3Error, doing: str) -> StorageError:
    return StorageError(f"{doing}: S3 answered {quote(error.code, limit=64)}: {quote(error.message)}")
