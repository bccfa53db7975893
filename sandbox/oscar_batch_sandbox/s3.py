"""The sandbox's S3: moto's server on localhost, and a bucket seeded with inputs and a few decoys."""
from __future__ import annotations

import io
import logging

import minio
from minio.deleteobjects import DeleteObject
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def input_keys(prefix: str, items: int) -> list[str]:
    return [f"{prefix}frame-{index:06d}.jpg" for index in range(1, items + 1)]


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

    def client(self, access_key: str, secret_key: str) -> minio.Minio:
        return minio.Minio(self.endpoint.removeprefix("http://"), access_key=access_key, secret_key=secret_key,
                           secure=False, region=REGION)


def seed_bucket(client: minio.Minio, bucket: str, keys: list[str]) -> None:
    """Make `bucket` hold exactly `keys` (small JPEG-ish bodies): moto's state is per process, not per server."""
    if client.bucket_exists(bucket):
        stale = (DeleteObject(obj.object_name) for obj in client.list_objects(bucket, recursive=True))
        for error in client.remove_objects(bucket, stale):
            raise RuntimeError(f"could not empty sandbox bucket {bucket}: {error}")
    else:
        client.make_bucket(bucket)
    for key in keys:
        body = b"\xff\xd8\xff\xe0sandbox " + key.encode()
        client.put_object(bucket, key, io.BytesIO(body), len(body), content_type="image/jpeg")
