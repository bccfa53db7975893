"""The batch's own objects in S3: which manifest to use, and whether the keys it writes are free to write.

Synchronous (minio, pykube-ng); the reconciler calls them off the event loop. Every S3 call here and in the
cancellation runs inside `s3_errors`, the one place a failed call becomes the batch's condition.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.errors import connection_problem
from oscar_batch.controller.resolver import Waiting
from oscar_batch.core import results, status
from oscar_batch.core.items import Lines
from oscar_batch.core.keys import UNLISTED_SAMPLE, Listing, Unlisted
from oscar_batch.core.spec import BatchSpec


def storage_waiting(error: Exception, spec: BatchSpec) -> Waiting:
    """The condition for a failed S3 call: S3's own answer when it gave one, else why it could not be reached."""
    if isinstance(error, manifest.StorageError):
        if "NoSuchBucket" in str(error):
            return Waiting("BucketNotFound", f"bucket {spec.bucket!r} does not exist at {spec.s3_endpoint}")
        return Waiting("StorageUnavailable", f"{error} (S3 at {spec.s3_endpoint})")
    return Waiting("StorageUnavailable", f"cannot reach S3 at {spec.s3_endpoint} ({connection_problem(error)})")


@contextlib.contextmanager
def s3_errors(spec: BatchSpec, *passing: type[Exception]) -> Iterator[None]:
    """Any failure in the block (minio, urllib3, the manifest client) comes out as `storage_waiting`: something to
    report and retry. `Waiting` goes through as it is, and so do the `passing` kinds the caller tells apart."""
    kept: tuple[type[Exception], ...] = (Waiting, *passing)
    try:
        yield
    except kept:
        raise
    except Exception as error:  # noqa: BLE001 - any S3 failure is something to report and retry
        raise storage_waiting(error, spec) from None


def existing_manifest(s3: Any, spec: BatchSpec, uid: str, kube: cluster.Kube) -> Listing | None:
    """What the manifest this batch already wrote lists and leaves out, or None when it must list the bucket.
    Raises Waiting when the bucket is missing or a key it writes belongs to somebody else."""
    with s3_errors(spec):
        if not manifest.bucket_exists(s3, spec):
            raise Waiting("BucketNotFound", f"bucket {spec.bucket!r} does not exist at {spec.s3_endpoint}")
        owner = manifest.owner(s3, spec, spec.manifest_key)
        if owner is not None and owner.uid == uid:
            sample = manifest.unlisted_keys(s3, spec)[:UNLISTED_SAMPLE] if owner.unlisted else []
            return Listing(owner.items, owner.unlisted, sample, skipped=owner.skipped)
        refuse_foreign(owner, spec, spec.manifest_key, uid, kube)
        refuse_foreign(manifest.owner(s3, spec, spec.results_key), spec, spec.results_key, uid, kube)
        refuse_foreign(manifest.owner(s3, spec, spec.unlisted_key), spec, spec.unlisted_key, uid, kube)
        if spec.outputs is not None and spec.outputs.skip_existing:
            refuse_foreign(manifest.owner(s3, spec, spec.skipped_key), spec, spec.skipped_key, uid, kube)
        return None


def refuse_foreign(owner: manifest.ObjectOwner | None, spec: BatchSpec, key: str, uid: str,
                   kube: cluster.Kube) -> None:
    """An object at a key this batch writes: fine when absent, ours, or left by a batch that is done."""
    if owner is None or owner.uid == uid:
        return
    if owner.uid is None:
        field = "resultsKey" if key == spec.results_key else "manifestKey"
        raise Waiting("KeyConflict", f"{spec.uri(key)} already exists and no OscarBatchJob wrote it; "
                                     f"set spec.{field} to a free key, or delete the object if it is not needed")
    if key != spec.manifest_key:
        return
    namespace, _, name = owner.batch.partition("/")
    other = kube.batch(namespace, name) if name else None
    if other is not None and other["metadata"].get("uid") == owner.uid and \
            (other.get("status") or {}).get("phase") not in status.FINISHED_PHASES:
        raise Waiting("ManifestKeyInUse", f"manifest key {spec.uri(key)} is in use by batch "
                                          f"{owner.batch}; set spec.manifestKey or wait for it")


def list_inputs(s3: Any, spec: BatchSpec, uid: str, batch: str, progress: manifest.ListingProgress) -> Listing:
    """The manifest written (with outputs declared, the output prefix listed first): what it lists and leaves
    out. Raises Waiting when S3 cannot list either, or the outputs' own bucket is missing."""
    with s3_errors(spec, manifest.ListingStopped):
        outputs = spec.outputs
        if outputs is not None and outputs.skip_existing and outputs.bucket != spec.bucket and \
                not manifest.bucket_exists(s3, spec, outputs.bucket):
            raise Waiting("BucketNotFound", f"the outputs' bucket {outputs.bucket!r} (spec.outputs.bucket) does not "
                                            f"exist at {spec.s3_endpoint}")
        return manifest.write(s3, spec, uid, batch, progress)


def unlisted_inputs(s3: Any, spec: BatchSpec) -> list[Unlisted]:
    with s3_errors(spec):
        return manifest.unlisted_keys(s3, spec)


def input_keys(s3: Any, spec: BatchSpec, lines: set[int]) -> dict[int, str]:
    with s3_errors(spec):
        return manifest.keys_at(s3, spec, lines)


def write_results(s3: Any, spec: BatchSpec, uid: str, batch: str, results: dict[str, Any],
                  kube: cluster.Kube) -> None:
    with s3_errors(spec):
        refuse_foreign(manifest.owner(s3, spec, spec.results_key), spec, spec.results_key, uid, kube)
        manifest.write_results(s3, spec, uid, batch, results)


def recorded_line_sets(s3: Any, spec: BatchSpec, uid: str, where: str) -> tuple[Lines, Lines]:
    """(succeeded, failed) lines from the results object status points at (`status.itemsAt`). Raises Waiting
    when S3 cannot give it, ValueError when it is not this batch's results."""
    bucket = f"s3://{spec.bucket}/"
    if not where.startswith(bucket):
        raise ValueError(f"{where} is not in the batch's bucket {spec.bucket}")
    with s3_errors(spec, ValueError):
        document = manifest.read_results(s3, spec, where.removeprefix(bucket))
    if not isinstance(document, dict):
        raise ValueError(f"{where} holds no results")
    return results.line_sets_from(document, uid)
