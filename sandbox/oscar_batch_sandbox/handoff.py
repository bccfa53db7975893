"""Ready-to-apply manifests for a running sandbox: its Secrets and an OscarBatchJob over its bucket, and the flags
an operator needs to work with it."""
from __future__ import annotations

import pathlib
from typing import Any

import yaml

BATCH_NAME = "fish-detector-batch"
OSCAR_SECRET, S3_SECRET = "oscar-credentials", "minio-credentials"
# The operator uses a Secret only when its owner opted in with this label (the operator's core.credentials).
CREDENTIALS_LABELS = {"batch.oscarbatch.dev/credentials": "true"}
# The sandbox serves OSCAR and S3 over plain http on the loopback interface, on ports chosen at start.
OPERATOR_ARGS = ("--allow-oscar", "127.0.0.1:*", "--allow-s3", "127.0.0.1:*", "--allow-http")
# How the operator reaches a cluster: its Jobs through the Kubernetes API it runs in, or the OSCAR API only.
IN_CLUSTER, REMOTE = "InCluster", "Remote"


def batch_manifests(info: dict[str, Any], namespace: str = "default", name: str = BATCH_NAME, *,
                    federated: bool = False, remote: bool = False, **spec_overrides: Any) -> list[dict[str, Any]]:
    """The Secrets, then an OscarBatchJob over the sandbox's bucket. On the first cluster (`spec.oscar`), or with
    `federated` on every cluster of the sandbox (`spec.clusters`, a credentials Secret each). With `remote`, the
    operator reaches the first cluster through its OSCAR API only (`access: Remote`), as it does the others."""
    oscar, s3 = info["oscar"], info["s3"]
    if federated:
        placement: dict[str, Any] = {"clusters": clusters_spec(info, remote=remote)}
        oscar_secrets = [_secret(cluster_secret(cluster["name"]), namespace,
                                 {"username": cluster["username"], "password": cluster["password"]})
                         for cluster in info["clusters"]]
    else:
        placement = {"oscar": {"endpoint": oscar["endpoint"], "credentialsSecret": OSCAR_SECRET,
                               **({"access": REMOTE} if remote else {})}}
        # With the sandbox's token endpoint, OSCAR is logged in to as a shared OSCAR's user would: by refresh token.
        login = dict(info.get("oidc") or {"username": oscar["username"], "password": oscar["password"]})
        oscar_secrets = [_secret(OSCAR_SECRET, namespace, login)]
    secrets = [*oscar_secrets,
               _secret(S3_SECRET, namespace, {"accessKey": s3["accessKey"], "secretKey": s3["secretKey"]})]
    batch = {
        "apiVersion": "batch.oscarbatch.dev/v1alpha1",
        "kind": "OscarBatchJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "service": oscar["service"],
            # No servicesNamespace: the operator reads it from the service definition, as a user's batch would.
            **placement,
            "storage": {"endpoint": s3["endpoint"], "region": s3["region"], "credentialsSecret": S3_SECRET,
                        "bucket": s3["bucket"], "prefix": s3["prefix"], "include": ["*.jpg"],
                        "exclude": ["thumbs/*"]},
            # Enough that an injected failure rate of 10% practically never exhausts a range (0.1⁶ per range).
            "retries": 5,
            **spec_overrides,
        },
    }
    return [*secrets, batch]


def clusters_spec(info: dict[str, Any], remote: bool = False) -> list[dict[str, Any]]:
    """`spec.clusters` over every cluster of the sandbox. The first is InCluster: the operator runs there and
    sees its Jobs through the Kubernetes API (Remote too with `remote`); the others are Remote, reached through
    their OSCAR API only. No cap on any (maxParallelism 0: as many as fit)."""
    return [{"name": cluster["name"], "endpoint": cluster["endpoint"],
             "credentialsSecret": cluster_secret(cluster["name"]),
             "access": REMOTE if remote or index else IN_CLUSTER, "maxParallelism": 0}
            for index, cluster in enumerate(info["clusters"])]


def cluster_secret(cluster_name: str) -> str:
    return f"{cluster_name}-credentials"


def declared_outputs(info: dict[str, Any]) -> dict[str, Any]:
    """`spec.outputs` for where the sandbox's service writes (`output/<key relative to the prefix>.json`, which
    the default rule recognises): inputs with an output are skipped. The service's definition names another
    output path (as OSCAR's FaaS-supervisor would upload to), so the prefix is given."""
    return {"prefix": info["s3"]["outputPrefix"]}


def write_batch_manifests(directory: pathlib.Path, info: dict[str, Any]) -> list[pathlib.Path]:
    """Write `00-secrets.yaml` and `10-batchjob.yaml`, so that `kubectl apply -f DIR` starts a batch that
    declares its outputs; over every cluster when the sandbox has more than one."""
    directory.mkdir(parents=True, exist_ok=True)
    *secrets, batch = batch_manifests(info, federated=len(info["clusters"]) > 1, outputs=declared_outputs(info))
    files = {directory / "00-secrets.yaml": secrets, directory / "10-batchjob.yaml": [batch]}
    for path, documents in files.items():
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        path.chmod(0o600)
    return list(files)


def _secret(name: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(CREDENTIALS_LABELS)},
            "stringData": values}
