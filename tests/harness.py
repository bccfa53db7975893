"""End-to-end harness: a sandbox, the real operator as a subprocess (`oscar-batch run`), and a watcher that
samples the cluster while a batch runs so that invariants are checked at every observed instant."""
from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import yaml

from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import SandboxConfig
from oscar_batch_sandbox.handoff import OPERATOR_ARGS, batch_manifests
from support import BIN, kubectl, wait_until

FAST_TIMING = ("--tick", "0.05", "--plan-interval", "0.5", "--status-interval", "0.1", "--retry-delay", "0.5",
               "--max-backoff", "4", "--unseen-job-timeout", "2", "--cancel-timeout", "10")


class OperatorProcess:
    def __init__(self, kubeconfig: pathlib.Path, log: pathlib.Path, args: tuple[str, ...] = (),
                 wrapper: tuple[str, ...] = ()) -> None:
        """`wrapper`: a command that runs the operator's command line given after it (an environment, say)."""
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args
        self.wrapper = wrapper
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [*self.wrapper, str(BIN / "oscar-batch"), "run", "--kubeconfig", str(self.kubeconfig), *FAST_TIMING,
                 *OPERATOR_ARGS, *self.args],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def kill(self) -> None:
        """A crash: no chance to clean up."""
        if self._process:
            self._process.kill()
            self._process.wait()


@dataclasses.dataclass
class Sample:
    status: dict[str, Any]
    active_jobs: int
    unschedulable_pods: list[str]
    all_jobs: int = 0          # every Job of the sandbox, finished or not, read after `status`


class Harness:
    def __init__(self, config: SandboxConfig, tmp_path: pathlib.Path, operator_args: tuple[str, ...] = (),
                 manifests: tuple[pathlib.Path, ...] = (), operator_wrapper: tuple[str, ...] = ()) -> None:
        """`manifests`: applied with kubectl before the operator starts (CRDs the operator needs, say);
        `operator_wrapper`: see `OperatorProcess`."""
        self.config = config
        self.tmp_path = tmp_path
        self.sandbox = SandboxThread(config)
        self.kubeconfig = tmp_path / "kubeconfig"
        self.manifests = manifests
        self.operator = OperatorProcess(self.kubeconfig, tmp_path / "operator.log", operator_args, operator_wrapper)
        self.operators = [self.operator]   # the first, and those of another_operator()
        self.samples: list[Sample] = []
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> Harness:
        self.sandbox.__enter__()
        self.sandbox.sandbox.write_kubeconfig(self.kubeconfig)
        for manifest in self.manifests:
            kubectl(self.kubeconfig, "apply", "--validate=false", "-f", str(manifest))
        self.operator.start()
        return self

    def another_operator(self, args: tuple[str, ...]) -> OperatorProcess:
        """A further `oscar-batch run` against the same sandbox (a second replica), started now."""
        operator = OperatorProcess(self.kubeconfig, self.tmp_path / f"operator-{len(self.operators) + 1}.log", args)
        self.operators.append(operator)
        operator.start()
        return operator

    def __exit__(self, *exc_info: object) -> None:
        self._stop_sampling.set()
        if self._sampler:
            self._sampler.join(timeout=5)
        for operator in self.operators:
            operator.stop()
        self.sandbox.__exit__(*exc_info)
        if exc_info[0] is not None:
            for operator in self.operators:
                sys.stderr.write(f"---- {operator.log.name}\n{operator.log.read_text()[-6000:]}")

    # ---- reading the sandbox on its own loop (its objects are not thread-safe) ------------------

    def read(self, function: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return function()
        return self.sandbox.call(run)

    def batch(self, name: str = "batch") -> dict[str, Any]:
        return self.read(lambda: self.sandbox.kube.get("batch.oscarbatch.dev/v1alpha1/oscarbatchjobs",
                                                       "default", name)) or {}

    def jobs(self) -> list[dict[str, Any]]:
        return self.read(lambda: self.sandbox.kube.list("batch/v1/jobs", self.config.services_namespace))

    def pods(self) -> list[dict[str, Any]]:
        return self.read(lambda: self.sandbox.kube.list("v1/pods", self.config.services_namespace))

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.read(lambda: self.sandbox.kube.list("v1/events")) if e.get("reason") == reason]

    def objects(self, prefix: str) -> dict[str, bytes]:
        s3 = self.sandbox.sandbox.s3.client(self.config.s3_access_key, self.config.s3_secret_key)
        return {obj.object_name: s3.get_object(self.config.bucket, obj.object_name).read()
                for obj in s3.list_objects(self.config.bucket, prefix=prefix, recursive=True)}

    # ---- driving a batch --------------------------------------------------------------------------

    def apply(self, name: str = "batch", *, secrets: bool = True, storage: dict[str, Any] | None = None,
              oscar: dict[str, Any] | None = None, federated: bool = False, **spec: Any) -> None:
        """`kubectl apply` the sandbox's Secrets (optionally) and a batch, as a user would; `storage` and
        `oscar` update those parts of the spec (`federated`: spec.clusters over every cluster of the sandbox). The
        batch keeps its Jobs unless the test says otherwise: most tests read them afterwards (the clean-up has tests
        of its own)."""
        *secret_docs, batch = batch_manifests(self.sandbox.info, name=name, federated=federated,
                                              **{"keepJobs": True, **spec})
        batch["spec"]["storage"].update(storage or {})
        if oscar:
            batch["spec"]["oscar"].update(oscar)
        documents = [*(secret_docs if secrets else []), batch]
        path = self.tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(documents))
        kubectl(self.kubeconfig, "apply", "--validate=false", "-f", str(path))

    def wait_for_phase(self, *phases: str, name: str = "batch", timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            batch = self.batch(name)
            return batch if (batch.get("status") or {}).get("phase") in phases else None
        return wait_until(reached, timeout=timeout, message=f"batch {name} to reach {phases}")

    def start_sampling(self, name: str = "batch") -> None:
        def sample() -> None:
            while not self._stop_sampling.wait(0.02):
                status = (self.batch(name).get("status") or {})
                jobs = self.jobs()
                active = sum(1 for job in jobs if not _finished(job))
                stuck = [pod["metadata"]["name"] for pod in self.pods() if _unschedulable(pod)]
                self.samples.append(Sample(status=status, active_jobs=active, unschedulable_pods=stuck,
                                           all_jobs=len(jobs)))
                if status.get("phase") in ("Succeeded", "Failed"):
                    return

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def _unschedulable(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in (pod.get("status") or {}).get("conditions") or ())
