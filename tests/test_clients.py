"""The operator's own clients against real peers: OSCAR's HTTP API (the simulator), S3 (moto), Kubernetes."""
from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import json
import socket
import threading
import urllib.error
import urllib.request

import pykube
import pytest
import requests
import urllib3

from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.oscar import OscarClient, OscarError
from oscar_batch.controller.batch_storage import list_inputs, storage_waiting
from oscar_batch.controller.resolver import IO_THREADS, Resolver, Waiting
from oscar_batch.core.credentials import OPT_IN_LABEL
from oscar_batch.core.endpoints import EndpointPolicy
from oscar_batch.core.spec import BatchSpec, parse_spec
from oscar_batch.core.tokens import Basic, Bearer
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import SandboxConfig
from oscar_batch_sandbox.s3 import decoy_keys, input_keys, seed_bucket
from support import wait_until


@pytest.fixture()
def oscar(sandbox) -> OscarClient:
    info = sandbox.info["oscar"]
    return OscarClient(info["endpoint"], Basic(info["username"], info["password"]))


def spec_for(sandbox, **storage) -> dict:
    s3 = sandbox.info["s3"]
    return parse_spec({
        "service": "fish-detector",
        "oscar": {"endpoint": "http://oscar.invalid", "credentialsSecret": "o"},
        "storage": {"endpoint": s3["endpoint"], "credentialsSecret": "s", "bucket": s3["bucket"],
                    "prefix": s3["prefix"], **storage},
    })


def s3_client(sandbox, spec):
    s3 = sandbox.info["s3"]
    return manifest.client(spec, s3["accessKey"], s3["secretKey"])


# ---- OSCAR ------------------------------------------------------------------------------------------

def test_oscar_client_reads_the_service_and_its_needs(oscar):
    service = oscar.service("fish-detector")
    assert service["cpu"] == "1" and service["memory"] == "1Gi" and service["token"]


def test_oscar_client_errors_name_the_problem_never_the_secret(sandbox):
    info = sandbox.info["oscar"]
    wrong = OscarClient(info["endpoint"], Basic(info["username"], "not-the-password"))
    with pytest.raises(OscarError, match="rejected the credentials") as rejected:
        wrong.service("fish-detector")
    assert rejected.value.status == 401 and "not-the-password" not in str(rejected.value)

    right = OscarClient(info["endpoint"], Basic(info["username"], info["password"]))
    with pytest.raises(OscarError, match="'nope': not found"):
        right.service("nope")
    with pytest.raises(OscarError, match="cannot reach OSCAR"):
        OscarClient("http://127.0.0.1:9", Bearer("t"), timeout=2).service("fish-detector")


def test_oscar_client_invokes_with_a_delegated_job_name_and_lists_jobs(oscar, sandbox):
    token = oscar.service("fish-detector")["token"]
    oscar.invoke("fish-detector", token, {"start": 1, "end": 1}, job_name="client-test-job")
    job = wait_until(lambda: sandbox.call(_get_job(sandbox, "client-test-job")), message="the Job")
    assert job["metadata"]["labels"]["oscar_service"] == "fish-detector"
    with pytest.raises(OscarError) as again:
        oscar.invoke("fish-detector", token, {"start": 1, "end": 1}, job_name="client-test-job")
    assert again.value.status == 500 and "exist" in str(again.value).lower()
    with pytest.raises(OscarError, match="rejected"):
        oscar.invoke("fish-detector", "0" * 64, {"start": 1, "end": 1})  # a service token, not this service's
    with pytest.raises(OscarError) as oidc:  # any other length is taken as an OIDC token no issuer knows
        oscar.invoke("fish-detector", "wrong-token", {"start": 1, "end": 1})
    assert oidc.value.status == 502
    assert "client-test-job" in dict(oscar.jobs("fish-detector"))
    oscar.delete_job("fish-detector", "client-test-job")
    assert "client-test-job" not in dict(oscar.jobs("fish-detector"))


def _get_job(sandbox, name):
    async def get():
        return sandbox.kube.get("batch/v1/jobs", sandbox.sandbox.config.services_namespace, name)
    return lambda: get()


def test_a_job_of_a_deleted_service_counts_as_deleted():
    """OSCAR deletes a service's Jobs with the service, then answers 403 ("no permission") for them, as for any
    service it does not find: the client counts such a Job as deleted, as it does one answered 404."""
    with SandboxThread(SandboxConfig(items=1, bucket="deleted-service", tenant_pods=())) as sandbox:
        info = sandbox.info["oscar"]
        client = OscarClient(info["endpoint"], Basic(info["username"], info["password"]))
        client.invoke("fish-detector", client.service("fish-detector")["token"], {"start": 1, "end": 1},
                      job_name="outlived-its-service")
        wait_until(lambda: sandbox.call(_get_job(sandbox, "outlived-its-service")), message="the Job")
        deleted = requests.delete(f"{info['endpoint']}/system/services/fish-detector", timeout=10,
                                  auth=(info["username"], info["password"]))
        assert deleted.status_code == 204
        assert sandbox.call(_get_job(sandbox, "outlived-its-service")) is None
        client.delete_job("fish-detector", "outlived-its-service")
        with pytest.raises(OscarError, match="not found"):
            client.service("fish-detector")


class Answering(http.server.BaseHTTPRequestHandler):
    """A stand-in HTTP peer that answers without logging."""

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class RefusesDeletes(Answering):
    """An OSCAR whose service exists but refuses this caller's deletes, as OSCAR does for an OIDC user's token
    on a service it may not touch."""

    def do_GET(self) -> None:
        self.answer(200, b'{"name": "fish-detector"}')

    def do_DELETE(self) -> None:
        self.answer(403, b"You do not have permission to access this service")


def test_a_refused_delete_of_a_job_whose_service_exists_is_an_error():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusesDeletes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = OscarClient(f"http://127.0.0.1:{server.server_address[1]}", Bearer("oidc-token"))
        with pytest.raises(OscarError) as refused:
            client.delete_job("fish-detector", "someone-elses-job")
        assert refused.value.status == 403
    finally:
        server.shutdown()
        server.server_close()


def test_oscar_client_reads_cluster_status(oscar):
    assert "cluster" in oscar.cluster_status()


class ForwardProxy(Answering):
    """An HTTP forward proxy that knows one host name, `oscar.behind-proxy.invalid`: the OSCAR it forwards to."""
    target = ""
    seen: list[tuple[str, str]] = []    # (request line's URL, Authorization) as the proxy received them

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        upstream = self.path.replace("http://oscar.behind-proxy.invalid", self.target)
        request = urllib.request.Request(upstream, headers={"Authorization": self.headers["Authorization"]})
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        self.answer(status, body)


def test_oscar_client_takes_the_proxy_from_the_environment_and_never_credentials_from_netrc(
        sandbox, monkeypatch, tmp_path):
    info = sandbox.info["oscar"]
    ForwardProxy.target, ForwardProxy.seen = info["endpoint"], []
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ForwardProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine oscar.behind-proxy.invalid login intruder password not-ours\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NETRC", str(netrc))
    try:
        client = OscarClient("http://oscar.behind-proxy.invalid", Basic(info["username"], info["password"]))
        monkeypatch.delenv("HTTP_PROXY")      # read when the client was made, not on each call
        assert client.service("fish-detector")["token"]
        assert "cluster" in client.cluster_status()
    finally:
        proxy.shutdown()
    ours = "Basic " + base64.b64encode(f"{info['username']}:{info['password']}".encode()).decode()
    assert ForwardProxy.seen == [("http://oscar.behind-proxy.invalid/system/services/fish-detector", ours),
                                 ("http://oscar.behind-proxy.invalid/system/status", ours)]


# ---- S3 -----------------------------------------------------------------------------------------------

def test_manifest_lists_only_inputs_in_order_and_records_its_owner(sandbox):
    spec = spec_for(sandbox, include=["*.jpg"], exclude=["thumbs/*"])
    s3 = s3_client(sandbox, spec)
    owner = manifest.owner(s3, spec, spec.manifest_key)
    assert owner is None or owner.uid != "uid-1"
    assert manifest.write(s3, spec, "uid-1", "default/first").items == 12
    body = s3.get_object(spec.bucket, spec.manifest_key).read().decode()
    assert body.splitlines() == input_keys("input/", 12)
    assert manifest.owner(s3, spec, spec.manifest_key) == manifest.ObjectOwner("uid-1", "default/first", 12)
    # Listing again never lists the manifest (or the results manifest) itself.
    assert manifest.read_results(s3, spec, spec.results_key) is None
    manifest.write_results(s3, spec, "uid-1", "default/first", {"phase": "Succeeded"})
    assert manifest.owner(s3, spec, spec.results_key).uid == "uid-1"
    assert manifest.read_results(s3, spec, spec.results_key) == {"phase": "Succeeded"}
    progress = manifest.ListingProgress()
    assert manifest.write(s3, spec, "uid-2", "default/second", progress).items == 12
    everything = list(s3.list_objects(spec.bucket, prefix=spec.prefix, recursive=True))
    assert (progress.listed, progress.inputs) == (len(everything), 12)      # every key seen, before the filters


# What moto stores (it refuses a key with a line feed, which the real tier's MinIO takes).
AWKWARD_KEYS = {
    "listable": ["keys/a.jpg", "keys/tab\there.jpg", "keys/\t", "keys/ leading.jpg", "keys/trailing.jpg ",
                 "keys/caf\u00e9.jpg", "keys/cafe\u0301.jpg", "keys/\U0001f41f.jpg", "keys/z.jpg"],
    "unlistable": ["keys/a\rb.jpg", "keys/l\u2028s.jpg", "keys/n\x85l.jpg", "keys/f\x0cf.jpg"],
    "not inputs": ["keys/folder/"],
}


def test_every_listed_key_is_one_manifest_line_or_reported_as_unlisted(sandbox):
    spec = parse_spec({**_raw_spec(sandbox), "storage": {**_raw_spec(sandbox)["storage"], "bucket": "awkward-keys",
                                                          "prefix": "keys/"}})
    s3 = s3_client(sandbox, spec)
    seed_bucket(s3, spec.bucket, [key for keys in AWKWARD_KEYS.values() for key in keys])
    listing = manifest.write(s3, spec, "uid-k", "default/keys")

    body = s3.get_object(spec.bucket, spec.manifest_key).read()
    listable = sorted(AWKWARD_KEYS["listable"], key=str.encode)
    assert body == b"".join(key.encode() + b"\n" for key in listable)   # byte for byte, in listing order
    assert body.decode().splitlines() == listable                       # however a service splits it
    assert listing.items == len(listable)
    unlisted = sorted(AWKWARD_KEYS["unlistable"], key=str.encode)
    assert listing.unlisted == len(unlisted) and [entry.key for entry in listing.sample] == unlisted
    assert all("manifest line" in entry.reason for entry in listing.sample)
    assert manifest.unlisted_keys(s3, spec) == listing.sample              # all of them, for the results
    assert manifest.owner(s3, spec, spec.manifest_key) == manifest.ObjectOwner("uid-k", "default/keys",
                                                                               len(listable), len(unlisted))
    assert manifest.owner(s3, spec, spec.unlisted_key).uid == "uid-k"
    assert manifest.keys_at(s3, spec, set(range(1, len(listable) + 2))) == dict(enumerate(listable, 1))


def test_a_stopped_listing_ends_at_the_next_key_and_writes_no_manifest(sandbox):
    spec = dataclasses.replace(spec_for(sandbox), manifest_key="stopped/index.txt")
    s3 = s3_client(sandbox, spec)
    progress = manifest.ListingProgress()
    keys = manifest.inputs(s3, spec, progress)
    next(keys)
    progress.stop()
    with pytest.raises(manifest.ListingStopped, match="stopped after 1 keys"):
        next(keys)
    progress = manifest.ListingProgress()
    progress.stop()
    with pytest.raises(manifest.ListingStopped):
        manifest.write(s3, spec, "uid", "default/b", progress)
    assert manifest.owner(s3, spec, spec.manifest_key) is None


def test_an_object_nobody_wrote_has_no_owner_uid_and_a_missing_bucket_is_told_apart(sandbox):
    spec = spec_for(sandbox)
    s3 = s3_client(sandbox, spec)
    assert manifest.bucket_exists(s3, spec)
    assert manifest.owner(s3, spec, "input/README.txt") == manifest.ObjectOwner(None, "?", 0)
    assert manifest.owner(s3, spec, "input/not-there.txt") is None
    missing = parse_spec({**_raw_spec(sandbox), "storage": {**_raw_spec(sandbox)["storage"], "bucket": "absent-b"}})
    assert not manifest.bucket_exists(s3_client(sandbox, missing), missing)


def test_manifest_reports_s3_errors_by_code(sandbox):
    spec = parse_spec({**_raw_spec(sandbox), "storage": {**_raw_spec(sandbox)["storage"], "bucket": "no-such-bucket"}})
    with pytest.raises(manifest.StorageError, match="NoSuchBucket"):
        manifest.write(s3_client(sandbox, spec), spec, "uid", "default/b")


def outputs_spec(sandbox, inputs_bucket: str, **outputs) -> BatchSpec:
    raw = _raw_spec(sandbox)
    return parse_spec({**raw, "storage": {**raw["storage"], "bucket": inputs_bucket, "prefix": "in/"},
                       "outputs": outputs})


def put(s3, bucket: str, key: str, body: bytes = b"{}") -> None:
    s3.put_object(bucket, key, io.BytesIO(body), len(body))


def test_the_listing_skips_inputs_whose_outputs_exist_under_the_default_rule(sandbox):
    spec = outputs_spec(sandbox, "outputs-default", prefix="out/")
    s3 = s3_client(sandbox, spec)
    seed_bucket(s3, spec.bucket, ["in/a.jpg", "in/b.jpg", "in/c.jpg", "in/d/e.png", "in/f.jpg"])
    for output in ("out/a.json", "out/b.jpg.json", "out/d/e.csv", "out/f", "out/c/x.json"):
        put(s3, spec.bucket, output)     # f: no extension, stands for no input; c/x.json is another input's
    progress = manifest.ListingProgress()
    listing = manifest.write(s3, spec, "uid-o", "default/outputs", progress)
    assert (listing.items, listing.skipped, progress.outputs, progress.skipped) == (2, 3, 5, 3)
    assert s3.get_object(spec.bucket, spec.manifest_key).read().decode().splitlines() == ["in/c.jpg", "in/f.jpg"]
    skipped = json.loads(s3.get_object(spec.bucket, spec.skipped_key).read())
    assert skipped == ["in/a.jpg", "in/b.jpg", "in/d/e.png"]
    assert manifest.owner(s3, spec, spec.manifest_key) == manifest.ObjectOwner("uid-o", "default/outputs", 2, 0, 3)
    assert manifest.owner(s3, spec, spec.skipped_key).uid == "uid-o"


def test_templates_name_outputs_in_another_bucket_and_all_must_exist(sandbox):
    spec = outputs_spec(sandbox, "outputs-inputs", bucket="outputs-elsewhere", prefix="v2/",
                        key=["{dir}{stem}.json", "{dir}{stem}.png"])
    s3 = s3_client(sandbox, spec)
    seed_bucket(s3, spec.bucket, ["in/a.jpg", "in/b.jpg", "in/c/d.jpg"])
    seed_bucket(s3, "outputs-elsewhere", ["v2/a.json", "v2/a.png", "v2/b.json", "v2/c/d.json", "v2/c/d.png",
                                          "v1/b.png"])
    listing = manifest.write(s3, spec, "uid-t", "default/templates")
    assert (listing.items, listing.skipped) == (1, 2)
    assert s3.get_object(spec.bucket, spec.manifest_key).read().decode().splitlines() == ["in/b.jpg"]


def test_outputs_written_before_a_time_or_before_their_input_do_not_count(sandbox):
    spec = outputs_spec(sandbox, "outputs-times", prefix="out/")
    s3 = s3_client(sandbox, spec)
    seed_bucket(s3, spec.bucket, ["in/a.jpg", "in/b.jpg"])

    def modified(key: str):
        return next(s3.list_objects(spec.bucket, key)).last_modified

    def written_after(key: str, earlier: str):   # on S3's clock, which may count whole seconds
        return wait_until(lambda: put(s3, spec.bucket, key) or modified(key) > modified(earlier), timeout=5,
                          message=f"{key} written after {earlier}")

    written_after("out/a.json", "in/b.jpg")
    written_after("out/b.json", "in/b.jpg")
    written = {key: modified(key) for key in ("out/a.json", "out/b.json")}
    assert manifest.write(s3, spec, "uid-w", "default/times").skipped == 2
    later = dataclasses.replace(spec, outputs=dataclasses.replace(
        spec.outputs, written_after=max(written.values())))                  # a model released after them
    assert manifest.write(s3, later, "uid-w", "default/times").skipped == 0
    written_after("in/b.jpg", "out/b.json")                                 # the input replaced since
    newer = dataclasses.replace(spec, outputs=dataclasses.replace(spec.outputs, newer_than_input=True))
    listing = manifest.write(s3, newer, "uid-w", "default/times")
    assert (listing.items, listing.skipped) == (1, 1)
    assert s3.get_object(spec.bucket, spec.manifest_key).read().decode().splitlines() == ["in/b.jpg"]


def test_outputs_in_a_missing_bucket_or_unreadable_are_a_condition_and_no_manifest(sandbox):
    spec = outputs_spec(sandbox, "outputs-missing", bucket="no-such-output-bucket", prefix="out/")
    s3 = s3_client(sandbox, spec)
    seed_bucket(s3, spec.bucket, ["in/a.jpg"])
    with pytest.raises(Waiting) as waiting:
        list_inputs(s3, spec, "uid-m", "default/missing", manifest.ListingProgress())
    assert waiting.value.reason == "BucketNotFound" and "'no-such-output-bucket' (spec.outputs.bucket)" in \
        waiting.value.message
    with pytest.raises(manifest.StorageError, match="listing the outputs s3://no-such-output-bucket/out/: S3 "
                                                    "answered NoSuchBucket"):
        manifest.write(s3, spec, "uid-m", "default/missing")
    assert manifest.owner(s3, spec, spec.manifest_key) is None


def _raw_spec(sandbox) -> dict:
    s3 = sandbox.info["s3"]
    return {"service": "fish-detector", "oscar": {"endpoint": "http://oscar.invalid", "credentialsSecret": "o"},
            "storage": {"endpoint": s3["endpoint"], "credentialsSecret": "s", "bucket": s3["bucket"]}}


# ---- Kubernetes ----------------------------------------------------------------------------------------

@pytest.fixture()
def kube(kubeconfig) -> cluster.Kube:
    return cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig))))


def test_kube_reads_nodes_pods_and_secrets(kube):
    assert {n["metadata"]["name"] for n in kube.nodes()} >= {"control-plane", "worker-1"}
    assert any(p["metadata"]["name"] == "tenant-db" for p in kube.pods())
    kube.create("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k", "namespace": "default"},
                            "data": {"accessKey": base64.b64encode(b"AK").decode()}})
    assert kube.secret("default", "k")["data"] == {"accessKey": base64.b64encode(b"AK").decode()}
    with pytest.raises(cluster.KubeError) as missing:
        kube.secret("default", "absent")
    assert missing.value.code == 404
    assert kube.batch("default", "absent") is None


@pytest.mark.parametrize(("name", "labels", "kind", "reason"), [
    ("opted-in", {OPT_IN_LABEL: "true"}, "Opaque", None),
    ("not-opted-in", {}, "Opaque", "SecretNotAllowed"),
    ("sa-token", {OPT_IN_LABEL: "true"}, "kubernetes.io/service-account-token", "SecretNotAllowed"),
    ("absent", None, None, "SecretNotFound"),
])
def test_the_resolver_uses_only_secrets_that_opted_in(kube, name, labels, kind, reason):
    if labels is not None:
        kube.create("secrets", {"apiVersion": "v1", "kind": "Secret", "type": kind,
                                "metadata": {"name": name, "namespace": "default", "labels": labels},
                                "data": {"token": base64.b64encode(b"sa-token-value").decode()}})
    resolver = Resolver(kube, "default", EndpointPolicy((), ()))
    if reason is None:
        assert resolver.secret(name, ("token",)) == {"token": "sa-token-value"}
        return
    with pytest.raises(Waiting) as refused:
        resolver.secret(name, ("token",))
    assert refused.value.reason == reason and "sa-token-value" not in refused.value.message


def test_seeding_makes_the_bucket_hold_exactly_the_inputs_and_decoys(sandbox):
    s3 = sandbox.sandbox.s3.client(sandbox.info["s3"]["accessKey"], sandbox.info["s3"]["secretKey"])
    seed_bucket(s3, "seeding-test", input_keys("in/", 3) + decoy_keys("in/"))
    seed_bucket(s3, "seeding-test", input_keys("in/", 2))  # again: what was there before is gone
    assert [o.object_name for o in s3.list_objects("seeding-test", recursive=True)] == input_keys("in/", 2)
    keys = [o.object_name for o in s3.list_objects(sandbox.info["s3"]["bucket"], recursive=True)]
    assert set(input_keys("input/", 12)) <= set(keys)
    assert set(decoy_keys("input/")) <= set(keys)


# ---- unreachable peers: what the messages say ------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_oscar_is_named_with_its_endpoint_and_the_cause():
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    client = OscarClient(endpoint, Basic("oscar", "s3cr3t-pw"))
    with pytest.raises(OscarError) as unreachable:
        client.service("fish-detector")
    message = str(unreachable.value)
    assert endpoint in message and "connection refused" in message and "s3cr3t-pw" not in message


def test_an_unreachable_s3_is_named_with_its_endpoint_and_the_cause(sandbox):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    spec = parse_spec({**_raw_spec(sandbox), "storage": {**_raw_spec(sandbox)["storage"], "endpoint": endpoint}})
    s3 = manifest.client(spec, "AKEXAMPLE", "secret-key-value")
    s3._http.connection_pool_kw["retries"] = urllib3.Retry(total=0)   # the refusal, without minio's retries
    with pytest.raises(Exception) as unreachable:
        manifest.bucket_exists(s3, spec)
    waiting = storage_waiting(unreachable.value, spec)
    assert waiting.reason == "StorageUnavailable"
    assert waiting.message == f"cannot reach S3 at {endpoint} (connection refused)"



# ---- connection pools sized to the threads that call them ---------------------------------------------

CALLERS = 32


class AnswersTogether(Answering):
    """Holds every request until CALLERS of them are open at once, so that each caller has a connection of its
    own when it hands it back to its client's pool."""
    together: threading.Barrier

    def do_GET(self) -> None:
        self.together.wait(timeout=10)
        self.answer(200, b'{"name": "fish-detector", "token": "t"}')

    do_HEAD = do_GET


def _pool_warnings(caplog, call) -> list[str]:
    """urllib3's warnings while CALLERS threads make `call` (True once answered) at once against a server
    answering them together."""
    AnswersTogether.together = threading.Barrier(CALLERS)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswersTogether)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answered: list[bool] = []
    try:
        with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
            callers = [threading.Thread(target=lambda: answered.append(call(
                f"http://127.0.0.1:{server.server_address[1]}"))) for _ in range(CALLERS)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert answered == [True] * CALLERS
    return [record.getMessage() for record in caplog.records if "pool is full" in record.getMessage()]


@pytest.mark.parametrize("pool_size, full", [(None, True), (IO_THREADS, False)])
def test_the_oscar_client_keeps_a_connection_for_each_io_thread(caplog, pool_size, full):
    clients: dict[str, OscarClient] = {}
    lock = threading.Lock()

    def call(endpoint: str) -> bool:
        with lock:
            client = clients.setdefault(endpoint, OscarClient(endpoint, Bearer("t"), **(
                {"pool_size": pool_size} if pool_size else {})))
        return client.service("fish-detector")["name"] == "fish-detector"

    assert bool(_pool_warnings(caplog, call)) == full


@pytest.mark.parametrize("pool_size, full", [(None, True), (IO_THREADS, False)])
def test_the_s3_client_keeps_a_connection_for_each_io_thread(caplog, pool_size, full):
    clients: dict[str, object] = {}
    lock = threading.Lock()

    def call(endpoint: str) -> bool:
        spec = parse_spec({"service": "s", "oscar": {"endpoint": "http://oscar.invalid", "credentialsSecret": "o"},
                           "storage": {"endpoint": endpoint, "credentialsSecret": "s", "bucket": "inputs"}})
        with lock:
            client = clients.setdefault(endpoint, manifest.client(spec, "AKEXAMPLE", "secret-key-value", **(
                {"pool_size": pool_size} if pool_size else {})))
        return manifest.bucket_exists(client, spec)

    assert bool(_pool_warnings(caplog, call)) == full


# ---- declared outputs: which lines of a range have theirs -------------------------------------------------------

def test_the_lines_of_a_range_with_outputs_are_read_from_one_window_of_the_manifest_and_of_the_outputs(sandbox):
    raw = {**_raw_spec(sandbox), "storage": {**_raw_spec(sandbox)["storage"], "bucket": "resume-lookup",
                                             "prefix": "in/"}}
    # Every input in the manifest, outputs or not (as for a range whose outputs were written after the listing).
    spec = parse_spec({**raw, "outputs": {"prefix": "out/", "skipExisting": False}})
    templated = parse_spec({**raw, "outputs": {"prefix": "res/", "key": ["{dir}{stem}.json", "{key}.txt"],
                                               "skipExisting": False}})
    s3 = s3_client(sandbox, spec)
    if not s3.bucket_exists("resume-lookup"):
        s3.make_bucket("resume-lookup")
    inputs = [f"in/d{index // 10}/img{index:03}.jpg" for index in range(40)]
    done = {3, 4, 9, 10, 11, 12, 17, 39}                           # line numbers (1-based) with their outputs
    for line, key in enumerate(inputs, 1):
        s3.put_object("resume-lookup", key, io.BytesIO(b"x"), 1)
        relative = key.removeprefix("in/")
        if line in done:   # both forms of the default rule, and every template of the other spec
            name = relative.removesuffix(".jpg") + ".json" if line % 2 else relative + ".json"
            s3.put_object("resume-lookup", f"out/{name}", io.BytesIO(b"{}"), 2)
            for output in (relative.removesuffix(".jpg") + ".json", relative + ".txt"):
                s3.put_object("resume-lookup", f"res/{output}", io.BytesIO(b"{}"), 2)
    s3.put_object("resume-lookup", "res/d1/img011.json", io.BytesIO(b"{}"), 2)   # one template of two: not done
    s3.put_object("resume-lookup", "out/d0/img005", io.BytesIO(b"{}"), 2)        # no extension: not an output
    assert manifest.write(s3, spec, "uid-r", "default/resume").items == 40
    for stride in (1024, 8, 3):                                      # ranges within one stride and across several
        offsets = manifest.LineOffsets(stride)
        for start, end in [(1, 41), (3, 14), (9, 13), (14, 17), (17, 18), (35, 41), (40, 41)]:
            assert offsets.keys_between(s3, spec, start, end) == inputs[start - 1:end - 1]
            found = manifest.lines_with_outputs(s3, spec, spec.outputs, "out/", offsets, start, end)
            assert list(found.lines()) == [line for line in sorted(done) if start <= line < end], (stride, start)
            found = manifest.lines_with_outputs(s3, templated, templated.outputs, "res/", offsets, start, end)
            assert list(found.lines()) == [line for line in sorted(done) if start <= line < end], (stride, start)
    assert manifest.LineOffsets(8).keys_between(s3, spec, 41, 50) == []
