"""The operator's Kubernetes API client (`pykube-ng`): Nodes and Pods for planning, Secrets, batch status, and the
list and watch of the Jobs OSCAR creates.

kopf watches the OscarBatchJobs and reacts; everything else the operator reads or writes goes through here.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import pykube
import requests

from oscar_batch.core.redaction import quote

GROUP, VERSION, PLURAL = "batch.oscarbatch.dev", "v1alpha1", "oscarbatchjobs"
LIST_PAGE = 500
KUEUE = "kueue.x-k8s.io/v1beta2"
WATCH_CHUNK_BYTES = 64 * 1024


def kube_config(kubeconfig: pathlib.Path | None = None) -> pykube.KubeConfig:
    """The file given, else $KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config: what is named
    explicitly wins, as with kubectl. pykube's own `from_env` tries the ServiceAccount first, so inside a pod it
    would ignore both the file given and $KUBECONFIG."""
    if kubeconfig is not None:
        return pykube.KubeConfig.from_file(str(kubeconfig))
    if os.environ.get("KUBECONFIG"):
        return pykube.KubeConfig.from_file()
    return pykube.KubeConfig.from_env()


class KubeError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Forbidden(KubeError):
    """The operator's ServiceAccount may not do this (HTTP 403)."""


class Expired(KubeError):
    """The resourceVersion a watch resumes from is older than the API server keeps (HTTP 410): list again."""


class Kube:
    def __init__(self, api: pykube.HTTPClient) -> None:
        self.api = api

    @classmethod
    def from_environment(cls, pool_size: int, kubeconfig: pathlib.Path | None = None) -> Kube:
        """Credentials as `kube_config` finds them. `pool_size`: the threads that call this client at once."""
        config = kube_config(kubeconfig)
        # Sized for the callers: urllib3's default pool of 10 drops the connections beyond that ("Connection
        # pool is full") and opens new ones for the next calls.
        adapter = pykube.http.KubernetesHTTPAdapter(config, pool_maxsize=pool_size)
        return cls(pykube.HTTPClient(config, http_adapter=adapter))

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._list("nodes", what="nodes"))

    def pods(self) -> Iterable[dict[str, Any]]:
        """Every pod of the cluster, page by page (a large cluster's pod list is never one response)."""
        return self._list("pods", what="pods")

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The pods of one Job (the Job controller labels them with its name)."""
        page = self._get("pods", namespace=namespace, what=f"pods of Job {namespace}/{job}",
                         params={"labelSelector": f"job-name={job}"})
        return list(page.get("items") or ())

    def jobs(self, namespace: str | None, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The Jobs matching a label selector (all namespaces for None), and the resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": LIST_PAGE, "labelSelector": selector}
        while True:
            page = self._get("jobs", namespace=namespace, version="batch/v1", what="Jobs", params=params)
            items.extend(page.get("items") or ())
            metadata = page.get("metadata") or {}
            if not metadata.get("continue"):
                return items, str(metadata.get("resourceVersion") or "")
            params = {"limit": LIST_PAGE, "labelSelector": selector, "continue": metadata["continue"]}

    def watch_jobs(self, namespace: str | None, selector: str, resource_version: str,
                   timeout: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each change after `resource_version`, BOOKMARKs included, until the API server ends
        the watch after about `timeout` seconds. Raises Expired when it no longer has that resourceVersion."""
        params = {"watch": "true", "labelSelector": selector, "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": timeout}
        kwargs: dict[str, Any] = {"url": "jobs", "version": "batch/v1", "params": params, "stream": True,
                                  "timeout": (10, timeout + 30)}
        if namespace is not None:
            kwargs["namespace"] = namespace
        try:
            with self.api.get(**kwargs) as response:
                self._check(response, "watching Jobs")
                # A chunked stream hands over each chunk as it comes, whatever the size asked: read it whole
                # instead of 512 bytes at a time (requests' default, 4% of the operator's CPU at 800 changes a
                # second). Unchunked, a read waits until it has the size asked for.
                chunk = WATCH_CHUNK_BYTES if response.raw.chunked else 512
                for line in response.iter_lines(chunk_size=chunk):
                    if not line:
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type", ""), event.get("object") or {}
                    if kind == "ERROR":
                        error_class = Expired if obj.get("code") == 410 else KubeError
                        raise error_class(f"watching Jobs: {quote(obj.get('message'))}", obj.get("code"))
                    yield kind, obj
        except requests.RequestException as error:
            raise KubeError(f"watching Jobs: the connection ended ({type(error).__name__})") from None

    def cluster_queue_of(self, namespace: str, local_queue: str) -> dict[str, Any] | None:
        """The Kueue ClusterQueue behind a LocalQueue; None when Kueue's API is absent or not readable."""
        try:
            queue = self._get(f"localqueues/{local_queue}", namespace=namespace, version=KUEUE,
                              what=f"Kueue LocalQueue {namespace}/{local_queue}")
            name = (queue.get("spec") or {}).get("clusterQueue")
            if not name:
                return None
            return self._get(f"clusterqueues/{name}", version=KUEUE, what=f"Kueue ClusterQueue {name}")
        except KubeError as error:
            if error.code in (403, 404):
                return None
            raise

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        """A Secret as the API server gives it: whether it may be used is the caller's decision
        (`core.credentials`), made before any value is decoded; the values never reach a message."""
        return self._get(f"secrets/{name}", namespace=namespace, what=f"Secret {namespace}/{name}")

    def batch(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._get(f"{PLURAL}/{name}", namespace=namespace, version=f"{GROUP}/{VERSION}",
                             what=f"OscarBatchJob {namespace}/{name}")
        except KubeError as error:
            if error.code == 404:
                return None
            raise

    def create(self, plural: str, document: dict[str, Any]) -> None:
        metadata = document["metadata"]
        doing = f"creating {document['kind']} {metadata.get('namespace')}/{metadata['name']}"
        try:
            response = self.api.post(url=plural, namespace=metadata.get("namespace"), version=document["apiVersion"],
                                     headers={"Content-Type": "application/json"}, data=json.dumps(document))
        except requests.RequestException as error:
            raise KubeError(f"{doing}: cannot reach the Kubernetes API ({type(error).__name__})") from None
        self._check(response, doing)

    def patch_batch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        response = self.api.patch(url=f"{PLURAL}/{name}/status", namespace=namespace, version=f"{GROUP}/{VERSION}",
                                  headers={"Content-Type": "application/merge-patch+json"},
                                  data=json.dumps({"status": status}))
        self._check(response, f"status of OscarBatchJob {namespace}/{name}")

    def _list(self, plural: str, *, what: str) -> Iterable[dict[str, Any]]:
        params: dict[str, Any] = {"limit": LIST_PAGE}
        while True:
            page = self._get(plural, what=what, params=params)
            yield from page.get("items") or ()
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params = {"limit": LIST_PAGE, "continue": token}

    def _get(self, url: str, *, what: str, namespace: str | None = None, version: str = "v1",
             params: dict[str, Any] | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"url": url, "version": version, "params": params}
        if namespace is not None:
            kwargs["namespace"] = namespace
        try:
            response = self.api.get(**kwargs)
        except requests.RequestException as error:
            raise KubeError(f"reading {what}: cannot reach the Kubernetes API ({type(error).__name__})") from None
        self._check(response, f"reading {what}")
        return response.json()

    @staticmethod
    def _check(response: requests.Response, doing: str) -> None:
        if response.ok:
            return
        try:
            message = quote(str(response.json().get("message", "")))
        except (ValueError, AttributeError):
            message = quote(response.text)
        error_class = {403: Forbidden, 410: Expired}.get(response.status_code, KubeError)
        raise error_class(f"{doing}: Kubernetes answered {response.status_code}: {message}", response.status_code)
