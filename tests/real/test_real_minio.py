"""The manifest against a real MinIO server (built from its module) instead of moto: listing order, filters,
object metadata, and the error codes the operator turns into messages."""
from __future__ import annotations

import io
import secrets
import unicodedata

import pytest
from realplane import Minio

from oscar_batch.clients import manifest
from oscar_batch.core.spec import parse_spec

KEYS = [
    "in/a.jpg", "in/b.JPG", "in/c.txt", "in/sub/d.jpg", "in/thumbnails/t.jpg", "in/with space.jpg",
    "in/\u00f1and\u00fa.jpg", "in/Z.jpg", "in/0.jpg", "other/x.jpg", "in.jpg",
]


def spec_for(server: Minio, bucket: str, **storage: object):
    return parse_spec({
        "service": "fish-detector",
        "oscar": {"endpoint": "https://oscar.example.org", "credentialsSecret": "oscar"},
        "storage": {"endpoint": server.url, "credentialsSecret": "minio", "bucket": bucket, **storage},
    })


@pytest.fixture
def bucket(real_minio: Minio) -> str:
    name = "batch-" + secrets.token_hex(4)
    s3 = real_minio.client()
    s3.make_bucket(name)
    for key in KEYS:
        s3.put_object(name, key, io.BytesIO(key.encode()), len(key.encode()))
    return name


def read(server: Minio, bucket: str, key: str) -> str:
    response = server.client().get_object(bucket, key)
    try:
        return response.read().decode()
    finally:
        response.close()
        response.release_conn()


def test_manifest_lists_filtered_inputs_in_key_order(real_minio: Minio, bucket: str) -> None:
    spec = spec_for(real_minio, bucket, prefix="in/", include=["*.jpg", "*.JPG"], exclude=["thumbnails/*"])
    s3 = manifest.client(spec, real_minio.access_key, real_minio.secret_key)
    items = manifest.write(s3, spec, "uid-1", "ns/batch").items
    lines = read(real_minio, bucket, spec.manifest_key).splitlines()
    expected = sorted((k for k in KEYS if k.startswith("in/") and k.endswith((".jpg", ".JPG"))
                       and not k.startswith("in/thumbnails/")), key=lambda k: k.encode())
    assert lines == expected  # S3 lists in UTF-8 byte order; the manifest keeps it
    assert items == len(expected)

    # Written again over the same prefix, the manifest does not list itself.
    assert manifest.write(s3, spec, "uid-1", "ns/batch").items == items
    assert read(real_minio, bucket, spec.manifest_key).splitlines() == expected


def test_manifest_owner_round_trips_through_object_metadata(real_minio: Minio, bucket: str) -> None:
    spec = spec_for(real_minio, bucket, prefix="in/")
    s3 = manifest.client(spec, real_minio.access_key, real_minio.secret_key)
    assert manifest.owner(s3, spec, spec.manifest_key) is None  # NoSuchKey: nobody wrote it yet
    items = manifest.write(s3, spec, "5f0c-uid", "fish/obsea").items
    owner = manifest.owner(s3, spec, spec.manifest_key)
    assert owner == manifest.ObjectOwner(uid="5f0c-uid", batch="fish/obsea", items=items)

    manifest.write_results(s3, spec, "5f0c-uid", "fish/obsea", {"ranges": [{"state": "succeeded"}]})
    assert read(real_minio, bucket, spec.results_key) == '{"ranges":[{"state":"succeeded"}]}'
    assert manifest.owner(s3, spec, spec.results_key).uid == "5f0c-uid"
    s3.put_object(bucket, "in/README.txt", io.BytesIO(b"hello"), 5)
    assert manifest.owner(s3, spec, "in/README.txt").uid is None     # somebody else's: never overwritten
    assert manifest.bucket_exists(s3, spec)
    manifest.remove(s3, spec, spec.manifest_key)
    assert manifest.owner(s3, spec, spec.manifest_key) is None


def test_storage_errors_name_minio_codes(real_minio: Minio, bucket: str) -> None:
    spec = spec_for(real_minio, bucket)
    wrong = manifest.client(spec, real_minio.access_key, "not-the-secret-key")
    with pytest.raises(manifest.StorageError, match="SignatureDoesNotMatch") as denied:
        manifest.write(wrong, spec, "uid", "ns/b")
    assert "not-the-secret-key" not in str(denied.value)

    missing = spec_for(real_minio, "no-such-bucket-" + secrets.token_hex(3))
    s3 = manifest.client(missing, real_minio.access_key, real_minio.secret_key)
    with pytest.raises(manifest.StorageError, match="NoSuchBucket"):
        manifest.write(s3, missing, "uid", "ns/b")


# Keys MinIO stores (moto refuses the line feed); in the manifest each listable one is exactly one line.
LISTABLE = ["awk/plain.jpg", "awk/tab\there.jpg", "awk/ leading.jpg", "awk/trailing.jpg ", "awk/\t.jpg",
            "awk/" + unicodedata.normalize("NFC", "café.jpg"), "awk/" + unicodedata.normalize("NFD", "café.jpg"),
            "awk/\U0001f41f.jpg", "awk/\u200bzero-width.jpg"]
UNLISTABLE = ["awk/a\nb.jpg", "awk/a\rb.jpg", "awk/crlf\r\n.jpg", "awk/trailing-lf.jpg\n", "awk/l\u2028s.jpg",
              "awk/n\x85l.jpg", "awk/f\x0cf.jpg"]
MARKERS = ["awk/folder/", "awk/nested/deeper/"]


def test_every_key_minio_stores_is_one_manifest_line_or_reported(real_minio: Minio) -> None:
    name = "keys-" + secrets.token_hex(4)
    s3 = real_minio.client()
    s3.make_bucket(name)
    for key in LISTABLE + UNLISTABLE + MARKERS:
        body = b"" if key.endswith("/") else b"jpeg"
        s3.put_object(name, key, io.BytesIO(body), len(body))
    stored = {obj.object_name for obj in s3.list_objects(name, recursive=True)}
    assert stored == set(LISTABLE + UNLISTABLE + MARKERS)      # MinIO keeps every one of them, as written

    spec = spec_for(real_minio, name, prefix="awk/")
    client = manifest.client(spec, real_minio.access_key, real_minio.secret_key)
    listing = manifest.write(client, spec, "uid-k", "ns/keys")

    listable = sorted(LISTABLE, key=str.encode)                  # S3 lists in UTF-8 byte order
    body = client.get_object(name, spec.manifest_key).read()
    assert body == b"".join(key.encode() + b"\n" for key in listable)
    assert body.decode().splitlines() == body.decode().split("\n")[:-1] == listable
    assert manifest.keys_at(client, spec, set(range(1, len(listable) + 1))) == dict(enumerate(listable, 1))

    unlisted = sorted(UNLISTABLE, key=str.encode)
    assert (listing.items, listing.unlisted) == (len(listable), len(unlisted))
    assert [entry.key for entry in manifest.unlisted_keys(client, spec)] == unlisted
    assert all("would split its manifest line" in entry.reason for entry in listing.sample)
    assert manifest.owner(client, spec, spec.manifest_key) == manifest.ObjectOwner(
        "uid-k", "ns/keys", len(listable), len(unlisted))
