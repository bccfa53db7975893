"""The Jobs watch against the real kube-apiserver: label selection, resume from the last resourceVersion seen,
deletions. (410 needs etcd to have compacted, every 5 minutes here: tests/test_job_watch.py scripts it.)"""
from __future__ import annotations

import json
from typing import Any

import pykube
from realplane import ControlPlane, wait_for

from oscar_batch.clients import cluster
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.job_watch import JobWatch
from oscar_batch.core import invocation

UID = "0123456789abcdef0123456789abcdef"


def job(name: str, labels: dict[str, str], start: int = 1, end: int = 3) -> dict[str, Any]:
    """A Job as OSCAR makes it from the operator's invocation of lines [start, end)."""
    event = json.dumps(invocation.payload(start=start, end=end, bucket="b", manifest_key="index.txt", batch_uid=UID,
                                          batch="default/b", attempt=1))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "oscar-container", "image": "registry.invalid/fish:none",
                 "env": [{"name": "EVENT", "value": event}]}]}}}}


def test_the_jobs_watch_against_the_real_api_server(real_plane: ControlPlane, namespace: str) -> None:
    kube = cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(real_plane.kubeconfig))))
    key = BatchKey(UID, namespace, "fish")
    first, second = f"fish-{UID[:12]}-l1-3-a1", f"fish-{UID[:12]}-l3-5-a1"
    real_plane.apply(job(first, {"oscar_service": "fish"}), "-n", namespace)
    real_plane.apply(job("not-oscars", {}), "-n", namespace)
    store = JobStore()
    store.watching([namespace])
    watch = JobWatch(kube, store, namespace, watch_seconds=1)     # resumes from its last version every second
    watch.start()
    try:
        wait_for(lambda: store.synced and store.names(key) == {first}, 30, "the first list")
        real_plane.apply(job(second, {"oscar_service": "fish"}, 3, 5), "-n", namespace)
        wait_for(lambda: store.names(key) == {first, second}, 30, "the second Job through the watch")
        real_plane.kubectl("delete", "job", first, "-n", namespace, "--wait=false")   # no garbage collector here
        wait_for(lambda: store.names(key) == {second}, 30, "the deletion")
    finally:
        watch.stop()
