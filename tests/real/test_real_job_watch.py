"""The Jobs watch against the real kube-apiserver: label selection, resume from the last resourceVersion seen,
deletions. (410 needs etcd to have compacted, every 5 minutes here: tests/test_job_watch.py scripts it.)"""
from __future__ import annotations

from typing import Any

import pykube
from realplane import ControlPlane, wait_for

from oscar_batch.clients import cluster
from oscar_batch.controller.job_watch import JobWatch
from oscar_batch.controller.registry import JobStore

UID = "0123456789abcdef0123456789abcdef"


def job(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "oscar-container", "image": "registry.invalid/fish:none"}]}}}}


def test_the_jobs_watch_against_the_real_api_server(real_plane: ControlPlane, namespace: str) -> None:
    kube = cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(real_plane.kubeconfig))))
    first, second = f"fish-{UID[:12]}-l1-3-a1", f"fish-{UID[:12]}-l3-5-a1"
    real_plane.apply(job(first, {"oscar_service": "fish"}), "-n", namespace)
    real_plane.apply(job("not-oscars", {}), "-n", namespace)
    store = JobStore()
    store.watching([namespace])
    watch = JobWatch(kube, store, namespace, watch_seconds=1)     # resumes from its last version every second
    watch.start()
    try:
        wait_for(lambda: store.synced and store.all_names() == {first}, 30, "the first list")
        real_plane.apply(job(second, {"oscar_service": "fish"}), "-n", namespace)
        wait_for(lambda: store.names(UID) == {first, second}, 30, "the second Job through the watch")
        real_plane.kubectl("delete", "job", first, "-n", namespace, "--wait=false")   # no garbage collector here
        wait_for(lambda: store.names(UID) == {second}, 30, "the deletion")
    finally:
        watch.stop()
