"""The real tier's servers: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, MinIO, the operator.

envtest-style: real binaries built from their Go modules by tools/real/build.sh into ~/.cache/oscar-batch/real/bin/,
started on random free loopback ports in temporary directories, with self-signed serving certificates,
token authentication (`--token-auth-file`) and `--authorization-mode=RBAC`. Fixtures are in conftest.py.
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import pathlib
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import pytest
import yaml

from oscar_batch_sandbox.handoff import CREDENTIALS_LABELS, OPERATOR_ARGS

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("OSCAR_REAL_BIN") or pathlib.Path(
    os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "oscar-batch" / "real" / "bin")
REQUIRED = os.environ.get("OSCAR_REAL_REQUIRED", "") not in ("", "0")
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
START_TIMEOUT = float(os.environ.get("OSCAR_REAL_START_TIMEOUT", "90"))
LOG_TAIL = 4000

# The users of --token-auth-file: name -> groups. Bootstrap RBAC already binds the two component users.
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "system:kube-scheduler": (),
    "system:kube-controller-manager": (),
    "nobody": (),  # authenticated, no role: every request but discovery is forbidden
}

# The API server's audit log: every request of a ServiceAccount outside kube-system (the operators', OSCAR's), at
# Metadata level (who, verb, resource, name, answer; no bodies), so that a test can tell what an operator asked for,
# granted or not. The controller manager's own ServiceAccounts, the components and the admin are not logged.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
              {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
              {"level": "None"}],
}


def require(*names: str) -> dict[str, pathlib.Path]:
    """The binaries, or a skip (a failure under OSCAR_REAL_REQUIRED) naming what is missing."""
    paths = {name: BIN_DIR / name for name in names}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if not KUBECTL.exists():
        missing.append(f"kubectl (expected at {KUBECTL})")
    if missing:
        unavailable(missing)
    return paths


def unavailable(missing: Sequence[str]) -> NoReturn:
    """Skip (fail under OSCAR_REAL_REQUIRED) the test: these files of the real tier are not built."""
    reason = (f"real control plane not built: {', '.join(missing)} missing in {BIN_DIR}; "
              "`make test-real` builds it (tools/real/build.sh)")
    if REQUIRED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             alive: Sequence[Process] = (), interval: float = 0.1) -> Any:
    """Poll until `predicate` is truthy; fail at the deadline, or at once when a process it needs exits."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        for process in alive:
            process.check_alive(what)
        if time.monotonic() > deadline:
            logs = "".join(process.tail() for process in alive)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{logs}")
        time.sleep(interval)


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL after a deadline."""

    def __init__(self, name: str, argv: Sequence[str], log: pathlib.Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log = name, list(argv), log
        self.started = datetime.datetime.now(datetime.UTC)
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def tail(self) -> str:
        text = self.log.read_text(errors="replace")[-LOG_TAIL:] if self.log.exists() else ""
        return f"\n--- last lines of {self.name} ({self.log}) ---\n{text}"

    def check_alive(self, what: str) -> None:
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code} while waiting for {what}{self.tail()}")

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log_file.close()


# ---- certificates ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    ca_cert: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path
    sa_key: pathlib.Path  # signs ServiceAccount tokens
    sa_pub: pathlib.Path


def make_pki(directory: pathlib.Path) -> Pki:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and a ServiceAccount key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = dict(not_valid_before=now - datetime.timedelta(hours=1), not_valid_after=now + datetime.timedelta(days=2))

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oscar-batch-real-tier-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(name) for name in ("localhost", "kubernetes", "kubernetes.default",
                                             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    serving = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
               .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .sign(ca_key, hashes.SHA256()))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    pki = Pki(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key",
              directory / "sa.key", directory / "sa.pub")
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(pem_key(key))
    pki.sa_key.write_bytes(pem_key(sa_key))
    pki.sa_pub.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    for private in (pki.serving_key, pki.sa_key):
        private.chmod(0o600)
    return pki


# ---- the control plane ----------------------------------------------------------------------------------


@dataclasses.dataclass
class ControlPlane:
    url: str
    pki: Pki
    tokens: dict[str, str]
    directory: pathlib.Path
    kubeconfig: pathlib.Path  # the admin's (system:masters)
    processes: list[Process] = dataclasses.field(default_factory=list)

    def kubeconfig_for(self, user: str) -> pathlib.Path:
        """A kubeconfig authenticating as `user` of the token file."""
        path = self.directory / f"kubeconfig-{user.replace(':', '_')}"
        if not path.exists():
            write_kubeconfig(path, self.url, self.pki.ca_cert, self.tokens[user], user)
        return path

    def request(self, path: str, user: str = "admin", timeout: float = 5,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET `path` as `user`; (status, body), also for error statuses."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        request = urllib.request.Request(self.url + path, headers={
            "Authorization": f"Bearer {self.tokens[user]}", **(headers or {})})
        try:
            with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def kubectl(self, *args: str, user: str = "admin", check: bool = True, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(KUBECTL), "--kubeconfig", str(self.kubeconfig_for(user)), *args],
                                input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], *args: str, check: bool = True,
              user: str = "admin") -> subprocess.CompletedProcess[str]:
        """`kubectl apply --validate=true -f -` with `obj` (or a List of objects) as YAML."""
        document = obj if isinstance(obj, dict) else {"apiVersion": "v1", "kind": "List", "items": obj}
        return self.kubectl("apply", "--validate=true", "-f", "-", *args, stdin=yaml.safe_dump(document),
                            check=check, user=user)

    def get_json(self, *args: str, user: str = "admin") -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args, user=user).stdout)

    def audited(self, user: str, since: datetime.datetime | None = None) -> list[dict[str, Any]]:
        """The audit events of `user`'s requests (ServiceAccounts outside kube-system: AUDIT_POLICY), those received
        from `since` on, each with `verb`, `objectRef` (resource, subresource, namespace, name, apiGroup) and
        `responseStatus.code`."""
        path = self.directory / "audit.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return [event for event in map(json.loads, lines) if event.get("user", {}).get("username") == user
                and (since is None or datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]) >= since)]

    def ready(self) -> bool:
        try:
            status, body = self.request("/readyz")
        except (OSError, ssl.SSLError):
            return False
        return status == 200 and body.strip() == b"ok"


def write_kubeconfig(path: pathlib.Path, url: str, ca: pathlib.Path, token: str, user: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "real", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "real", "context": {"cluster": "real", "user": user, "namespace": "default"}}],
        "current-context": "real",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _start_etcd(binary: pathlib.Path, directory: pathlib.Path) -> tuple[Process, str]:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    process = Process("etcd", [
        str(binary), "--name=real", f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=real={peer_url}", "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # a throwaway store: no fsync per write on a shared disk
        "--quota-backend-bytes=1073741824", "--log-level=warn",
    ], directory / "etcd.log")

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(client_url + "/health", timeout=2) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    try:
        wait_for(healthy, START_TIMEOUT, "etcd /health", alive=[process])
    except BaseException:
        process.stop()
        raise
    return process, client_url


def start_control_plane(directory: pathlib.Path) -> ControlPlane:
    binaries = require("etcd", "kube-apiserver")
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_pki(directory / "pki")
    tokens = {user: secrets.token_hex(16) for user in USERS}
    token_file = directory / "tokens.csv"
    token_file.write_text("".join(
        f'{tokens[user]},{user},{user},"{",".join(groups)}"\n' if groups else f"{tokens[user]},{user},{user}\n"
        for user, groups in USERS.items()))
    token_file.chmod(0o600)
    audit_policy = directory / "audit-policy.yaml"
    audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))

    etcd, etcd_url = _start_etcd(binaries["etcd"], directory)
    port = free_port()
    plane = ControlPlane(f"https://127.0.0.1:{port}", pki, tokens, directory, directory / "kubeconfig", [etcd])
    try:
        plane.processes.append(Process("kube-apiserver", [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--cert-dir={directory / 'apiserver-certs'}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            f"--audit-policy-file={audit_policy}", f"--audit-log-path={directory / 'audit.log'}",
            "--audit-log-mode=blocking",   # written before the answer: a test reads it right after
            # As kubeadm does: OSCAR's Jobs carry a privileged rclone sidecar when the service mounts a bucket.
            "--allow-privileged=true",
            "--service-cluster-ip-range=10.0.0.0/24",
            # No Service "kubernetes" endpoints: 127.0.0.1 is no address a pod could reach anyway.
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            "--profiling=false", "--v=1",
        ], directory / "kube-apiserver.log"))
        wait_for(plane.ready, START_TIMEOUT, "kube-apiserver /readyz", alive=plane.processes)
        write_kubeconfig(plane.kubeconfig, plane.url, pki.ca_cert, tokens["admin"], "admin")
        plane.kubeconfig_for("admin").write_text(plane.kubeconfig.read_text())
    except BaseException:
        stop_all(plane.processes)
        raise
    return plane


def start_components(plane: ControlPlane) -> list[Process]:
    """kube-scheduler and kube-controller-manager (only the controllers this tier needs), ready to work."""
    binaries = require("kube-scheduler", "kube-controller-manager")
    directory = plane.directory
    processes: list[Process] = []
    try:
        scheduler_port, manager_port = free_port(), free_port()
        processes.append(Process("kube-scheduler", [
            str(binaries["kube-scheduler"]),
            f"--kubeconfig={plane.kubeconfig_for('system:kube-scheduler')}",
            f"--authentication-kubeconfig={plane.kubeconfig_for('system:kube-scheduler')}",
            f"--authorization-kubeconfig={plane.kubeconfig_for('system:kube-scheduler')}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={scheduler_port}",
            f"--cert-dir={directory / 'scheduler-certs'}", "--v=1",
        ], directory / "kube-scheduler.log"))
        processes.append(Process("kube-controller-manager", [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={plane.kubeconfig_for('system:kube-controller-manager')}",
            f"--authentication-kubeconfig={plane.kubeconfig_for('system:kube-controller-manager')}",
            f"--authorization-kubeconfig={plane.kubeconfig_for('system:kube-controller-manager')}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={manager_port}",
            f"--cert-dir={directory / 'controller-manager-certs'}",
            # Each controller under its own ServiceAccount, as in a real cluster: RBAC is real for them too.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={plane.pki.sa_key}", f"--root-ca-file={plane.pki.ca_cert}",
            # No node lifecycle controller: the simulated nodes have no kubelet heartbeat and would be tainted
            # unreachable after the grace period.
            "--controllers=job-controller,serviceaccount-controller,serviceaccount-token-controller,"
            "garbage-collector-controller,namespace-controller,ttl-after-finished-controller,"
            "root-ca-certificate-publisher-controller",
            "--v=1",
        ], directory / "kube-controller-manager.log"))

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the components' serving certificates are self-signed in memory

        def healthy(port: int) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=insecure,
                                                timeout=2) as response:
                        return response.status == 200
                except (OSError, ssl.SSLError):
                    return False
            return check

        wait_for(healthy(scheduler_port), START_TIMEOUT, "kube-scheduler /healthz", alive=processes)
        wait_for(healthy(manager_port), START_TIMEOUT, "kube-controller-manager /healthz", alive=processes)
        # The serviceaccount controller works: pods can be admitted in namespace default.
        wait_for(lambda: plane.request("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                 START_TIMEOUT, "ServiceAccount default/default from the controller manager", alive=processes)
    except BaseException:
        stop_all(processes)
        raise
    return processes


def stop_all(processes: Sequence[Process]) -> None:
    for process in reversed(processes):
        process.stop()


# ---- the operator ---------------------------------------------------------------------------------------

OPERATOR_NS = "oscar-batch-system"
OPERATOR_SA = "oscar-batch-operator"
OPERATOR_SUBJECT = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"


def install_operator(plane: ControlPlane) -> None:
    """manifests/ applied with kustomize, as the README tells users to (CRD, Namespace, RBAC, Deployment)."""
    plane.kubectl("apply", "--validate=true", "-k", str(ROOT / "manifests"))
    wait_for(lambda: plane.kubectl("get", "serviceaccount", OPERATOR_SA, "-n", OPERATOR_NS,
                                   check=False).returncode == 0, 30, "the operator's ServiceAccount")


def start_operator(plane: ControlPlane, directory: pathlib.Path, *extra: str,
                   account_namespace: str = OPERATOR_NS) -> Process:
    """`oscar-batch run` with a token the API server issued to the operator's ServiceAccount (TokenRequest), the
    one in `account_namespace`. The token is also `plane.tokens[subject(account_namespace)]`, for requests."""
    token = plane.kubectl("create", "token", OPERATOR_SA, "-n", account_namespace, "--duration=1h").stdout.strip()
    plane.tokens[subject(account_namespace)] = token
    kubeconfig = directory / "operator-kubeconfig"
    write_kubeconfig(kubeconfig, plane.url, plane.pki.ca_cert, token, subject(account_namespace))
    executable = pathlib.Path(sys.executable).parent / "oscar-batch"
    # Nothing of the admin's may leak in: no KUBECONFIG, no in-cluster variables.
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")}
    # OSCAR (the real one and the simulator), MinIO and the discard port all listen on the loopback, in plain http.
    return Process("oscar-batch run", [str(executable), "run", "--kubeconfig", str(kubeconfig),
                                       "--retry-delay", "1", "--verbose", *OPERATOR_ARGS, *extra],
                   directory / "operator.log", env=env)


def create_credentials(plane: ControlPlane, namespace: str, name: str, values: dict[str, str]) -> None:
    """A Secret a batch may take its credentials from: labelled as opted in from its creation on."""
    plane.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": name, "labels": CREDENTIALS_LABELS}, "stringData": values}, "-n", namespace)


def subject(account_namespace: str = OPERATOR_NS) -> str:
    """The user name of the operator's ServiceAccount in that namespace, as RBAC and its messages name it."""
    return f"system:serviceaccount:{account_namespace}:{OPERATOR_SA}"


def rbac_denials(operator: Process, account_namespace: str = OPERATOR_NS) -> list[str]:
    """Lines of the operator's log where RBAC refused it: `… is forbidden: User "system:serviceaccount:…" cannot …`.
    (A 403 for another cause, such as NamespaceTerminating for an Event in a namespace being deleted, is not one.)"""
    return [line for line in operator.log.read_text(errors="replace").splitlines()
            if f'forbidden: User "{subject(account_namespace)}" cannot' in line]


# ---- MinIO ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Minio:
    url: str
    access_key: str
    secret_key: str
    process: Process

    def client(self, secret_key: str | None = None):
        import minio

        return minio.Minio(self.url.removeprefix("http://"), access_key=self.access_key,
                           secret_key=secret_key or self.secret_key, secure=False, region="us-east-1")


def start_minio(directory: pathlib.Path, wrap: Callable[[list[str]], list[str]] = list,
                credentials: tuple[str, str] | None = None) -> Minio:
    """A single-drive MinIO server on a free loopback port, its data in `directory`/data, with random root
    credentials unless given (a data directory kept between runs needs the ones it was made with); `wrap` may
    run it inside something (a mount namespace)."""
    binary = require("minio")["minio"]
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access_key, secret_key = credentials or ("oscar" + secrets.token_hex(4), secrets.token_hex(16))
    env = {**os.environ, "MINIO_ROOT_USER": access_key, "MINIO_ROOT_PASSWORD": secret_key,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_REGION": "us-east-1"}
    process = Process("minio", wrap([str(binary), "server", str(directory / "data"), "--quiet",
                                     "--address", f"127.0.0.1:{port}"]), directory / "minio.log", env=env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/minio/health/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, START_TIMEOUT, "MinIO /minio/health/ready", alive=[process])
    except BaseException:
        process.stop()
        raise
    return Minio(url, access_key, secret_key, process)
