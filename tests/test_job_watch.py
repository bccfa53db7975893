"""The Jobs watch over real HTTP with the operator's own client (pykube): against the sandbox's API server, and
against a scripted one that expires resourceVersions and drops connections the way a real one does."""
from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pykube
import pytest

from oscar_batch.clients import cluster
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.job_watch import JobWatch
from oscar_batch.core import invocation
from oscar_batch.core.ranges import Outcome
from support import wait_until

UID = "0123456789abcdef0123456789abcdef"
KEY, SCRIPTED_KEY = BatchKey(UID, "watch-test", "fish"), BatchKey(UID, "svc", "fish")


def job(name: str, namespace: str, labels: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    """A Job as OSCAR makes it: a name the operator chose carries lines the EVENT repeats, with the full UID."""
    named = invocation.name_identity(name)
    env = [] if named is None else [{"name": "EVENT", "value": json.dumps(invocation.payload(
        start=named.start, end=named.end, bucket="b", manifest_key="index.txt", batch_uid=UID, batch="default/b",
        attempt=named.attempt))}]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1",
                         "labels": {"oscar_service": "fish"} if labels is None else labels},
            "spec": {"template": {"spec": {"containers": [{"name": "oscar-container", "image": "fish", "env": env}]}}},
            "status": status}


def batch_job(start: int, namespace: str, **status: Any) -> dict[str, Any]:
    return job(f"fish-{UID[:12]}-l{start}-{start + 2}-a1", namespace, **status)


@pytest.fixture()
def watched(sandbox, kubeconfig) -> Iterator[tuple[JobStore, Any]]:
    store = JobStore()
    store.watching(["watch-test"])
    kube = cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig))))
    watch = JobWatch(kube, store, "watch-test", watch_seconds=1)    # every second a new watch resumes
    watch.start()
    yield store, sandbox
    watch.stop()


def test_the_watch_files_each_change_of_oscars_jobs_and_nothing_else(watched):
    store, sandbox = watched
    first = batch_job(1, "watch-test")
    sandbox.call(lambda: sandbox.kube.create("batch/v1/jobs", first))
    sandbox.call(lambda: sandbox.kube.create("batch/v1/jobs", job("someone-elses", "watch-test", labels={})))
    wait_until(lambda: store.synced and store.names(KEY), message="the first Job listed")
    store.everything(KEY)
    assert store.all_names() == {("watch-test", first["metadata"]["name"])}

    second = batch_job(3, "watch-test")
    sandbox.call(lambda: sandbox.kube.create("batch/v1/jobs", second))
    sandbox.call(lambda: sandbox.kube.patch("batch/v1/jobs", "watch-test", first["metadata"]["name"],
                                            {"status": {"succeeded": 1, "conditions": [
                                                {"type": "Complete", "status": "True"}]}}))
    expected = {first["metadata"]["name"]: Outcome.SUCCEEDED, second["metadata"]["name"]: Outcome.RUNNING}
    seen: dict[str, Outcome] = {}
    wait_until(lambda: seen.update({j.name: j.outcome for j in store.changes(KEY)}) or seen == expected,
               timeout=15, message="both changes, the watch having timed out and resumed")

    sandbox.call(lambda: sandbox.kube.delete("batch/v1/jobs", "watch-test", second["metadata"]["name"]))
    wait_until(lambda: store.names(KEY) == {first["metadata"]["name"]}, timeout=15, message="the deletion")


class ScriptedApiServer(http.server.ThreadingHTTPServer):
    """Lists what `jobs` holds at `version`. A watch from an older version answers 410 (compacted); a watch with
    `watch_events` to send drops the connection after them, with no end to the stream."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.jobs: list[dict[str, Any]] = []
        self.version = 10
        self.watch_events: list[dict[str, Any]] = []
        self.answers: list[str] = []             # "list", "410", "dropped", "timed out"


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    server: ScriptedApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "watch=true" not in self.path:
            assert "labelSelector=oscar_service" in self.path
            self.server.answers.append("list")
            self._send({"kind": "JobList", "metadata": {"resourceVersion": str(self.server.version)},
                        "items": self.server.jobs})
            return
        since = int(self.path.split("resourceVersion=")[1].split("&")[0])
        if since < self.server.version:
            self.server.answers.append("410")
            self._stream([{"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                        "message": "too old resource version"}}])
            return
        events, self.server.watch_events = self.server.watch_events, []
        changed = {event["object"]["metadata"]["name"]: event["object"] for event in events}
        self.server.jobs = [changed.get(job["metadata"]["name"], job) for job in self.server.jobs]
        self.server.answers.append("dropped" if events else "timed out")
        self._stream(events, drop=bool(events))

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: list[dict[str, Any]], drop: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()
        if drop:
            self.close_connection = True          # no last chunk: the client sees the stream break
        else:
            self.wfile.write(b"0\r\n\r\n")


def test_an_expired_version_and_a_dropped_connection_each_lead_to_a_fresh_list_that_forgets_the_deleted():
    server = ScriptedApiServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = pykube.KubeConfig.from_url(f"http://127.0.0.1:{server.server_address[1]}")
    store = JobStore()
    first, second = batch_job(1, "svc"), batch_job(3, "svc")
    done = batch_job(1, "svc", succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    done["metadata"]["resourceVersion"] = "10"
    server.jobs = [first, second]
    server.watch_events = [{"type": "MODIFIED", "object": done}]
    watch = JobWatch(cluster.Kube(pykube.HTTPClient(config)), store, None, first_delay=0.05, watch_seconds=1)
    watch.start()
    try:
        wait_until(lambda: server.answers.count("list") == 2, message="a list after the dropped connection")
        assert server.answers[:3] == ["list", "dropped", "list"]
        assert [j.outcome for j in store.changes(SCRIPTED_KEY)
                if j.name == first["metadata"]["name"]] == [Outcome.SUCCEEDED]
        server.jobs, server.version = [done], 20   # `second` was deleted while nobody watched
        wait_until(lambda: "410" in server.answers and store.names(SCRIPTED_KEY) == {first["metadata"]["name"]},
                   message="a list after the 410 that forgets the deleted Job")
        assert server.answers.index("410") < len(server.answers) - 1
    finally:
        watch.stop()
        server.shutdown()
