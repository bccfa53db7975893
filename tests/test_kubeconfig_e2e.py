"""`--kubeconfig` inside a pod: the operator and the CLI use the file given, not the pod's ServiceAccount.

The pod is faked for real: the ServiceAccount's files at their fixed path (/var/run/secrets/kubernetes.io/
serviceaccount, in a mount namespace of the process's own, so that nothing else on the machine sees them) and
KUBERNETES_SERVICE_HOST/PORT, pointing at a port where nothing listens. Using them, nothing would work.
"""
from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from support import BIN, free_port

# Runs the command after SA_DIR with SA_DIR's files as the in-cluster ServiceAccount: a fresh tmpfs over /run
# (/var/run's target) in a private mount namespace; -n: no mount table written to the real /run.
IN_POD = ("sh", "-c", 'mount -n -t tmpfs tmpfs /run && mkdir -p "$1" && cp "$0"/* "$1" && shift && exec "$@"')
SERVICE_ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"


def _in_pod(tmp_path: pathlib.Path) -> tuple[str, ...]:
    """A wrapper that runs a command as if in a pod whose ServiceAccount leads nowhere."""
    if subprocess.run(["unshare", "--map-root-user", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("needs `unshare --map-root-user --mount` (user and mount namespaces) to fake a pod")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("not-a-token")
    (account / "namespace").write_text("default")
    (account / "ca.crt").write_text("not a certificate")
    return ("env", "KUBERNETES_SERVICE_HOST=127.0.0.1", f"KUBERNETES_SERVICE_PORT={free_port()}",
            "unshare", "--map-root-user", "--mount", *IN_POD, str(account), SERVICE_ACCOUNT)


def test_the_operator_and_the_cli_use_the_kubeconfig_given_inside_a_pod(tmp_path):
    wrapper = _in_pod(tmp_path)
    config = SandboxConfig(items=6, bucket="kubeconfig-bucket",
                           behaviour=Behaviour(item_seconds=0.5, startup_seconds=0.5, time_scale=0.01, seed=2))
    with Harness(config, tmp_path, operator_wrapper=wrapper) as harness:
        # The wrapper does fake a pod: the ServiceAccount is there for the operator's process.
        probe = subprocess.run([*wrapper, "cat", f"{SERVICE_ACCOUNT}/token"], capture_output=True, text=True)
        assert probe.stdout == "not-a-token", probe.stderr
        assert not os.path.exists(SERVICE_ACCOUNT)   # and for nothing else

        harness.apply(itemsPerInvocation=2)
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=60)["status"]
        assert status["phase"] == "Succeeded", status

        shown = subprocess.run([*wrapper, str(BIN / "oscar-batch"), "status", "batch", "-n", "default",
                                "--kubeconfig", str(harness.kubeconfig)], capture_output=True, text=True)
        assert shown.returncode == 0 and "Succeeded" in shown.stdout, shown.stderr
