"""The sandbox's S3: moto's server on localhost, and a bucket seeded with inputs and a few decoys."""
from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping
from typing import Any

import minio
from minio.deleteobjects import DeleteObject
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
INPUT_NAME = re.compile(r"frame-(?P<number>[0-9]+)\.jpg")


def input_key(prefix: str, number: int) -> str:
    """The sandbox's n-th input, 1-based."""
    return f"{prefix}frame-{number:06d}.jpg"


def input_keys(prefix: str, items: int) -> list[str]:
    return [input_key(prefix, number) for number in range(1, items + 1)]


def input_number(key: str, prefix: str) -> int | None:
    """n for the n-th input key of `input_keys` (its line in a manifest of all the inputs); None for other keys."""
    match = INPUT_NAME.fullmatch(key[len(prefix):]) if key.startswith(prefix) else None
    return int(match["number"]) if match else None


def decoy_keys(prefix: str) -> list[str]:
    """Objects a batch over `<prefix>*.jpg` must not process: other suffixes, other prefixes."""
    return [f"{prefix}README.txt", f"{prefix}thumbs/frame-000001.png", "archive/frame-000001.jpg"]


class S3Server:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        # werkzeug logs every request at INFO; a batch makes thousands.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        self._server.stop()

    # ---- in process: moto's backend, which serves this process's server (moto keeps one per process) ----

    @staticmethod
    def _backend() -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def put_in_process(self, bucket: str, key: str, body: bytes) -> None:
        """PUT without HTTP (~25,000/s against moto server's ~500/s); the object is the same to every client."""
        self._backend().put_object(bucket, key, body, disable_notification=True)

    def get_in_process(self, bucket: str, key: str) -> bytes:
        """GET without HTTP; a missing key raises as a GET would (NoSuchKey)."""
        from moto.s3.exceptions import MissingKey

        found = self._backend().get_object(bucket, key)
        if found is None:
            raise MissingKey(key=key)
        return bytes(found.value)

    def keys_in_process(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`, without HTTP: moto sorts a whole prefix for each 1,000-key page."""
        return sorted(key for key in list(self._backend().get_bucket(bucket).keys) if key.startswith(prefix))

    def seed_in_process(self, client: minio.Minio, bucket: str, keys: list[str],
                        outputs: Mapping[str, bytes] | None = None) -> None:
        """`seed_bucket` without HTTP for the objects (the bucket is made through S3 if missing)."""
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        backend = self._backend()
        for stale in list(backend.get_bucket(bucket).keys):
            backend.delete_object(bucket, stale)
        for key in keys:
            self.put_in_process(bucket, key, input_body(key))
        for key, body in (outputs or {}).items():
            self.put_in_process(bucket, key, body)

    def client(self, access_key: str, secret_key: str) -> minio.Minio:
        return minio.Minio(self.endpoint.removeprefix("http://"), access_key=access_key, secret_key=secret_key,
                           secure=False, region=REGION)


def seed_bucket(client: minio.Minio, bucket: str, keys: list[str], outputs: Mapping[str, bytes] | None = None) -> None:
    """Make `bucket` hold exactly `keys` (small JPEG-ish bodies) and `outputs` (JSON bodies, after the inputs):
    moto's state is per process, not per server."""
    if client.bucket_exists(bucket):
        stale = (DeleteObject(obj.object_name) for obj in client.list_objects(bucket, recursive=True))
        for error in client.remove_objects(bucket, stale):
            raise RuntimeError(f"could not empty sandbox bucket {bucket}: {error}")
    else:
        client.make_bucket(bucket)
    for key in keys:
        body = input_body(key)
        client.put_object(bucket, key, io.BytesIO(body), len(body), content_type="image/jpeg")
    for key, body in (outputs or {}).items():
        client.put_object(bucket, key, io.BytesIO(body), len(body), content_type="application/json")


def input_body(key: str) -> bytes:
    return b"\xff\xd8\xff\xe0sandbox " + key.encode()
