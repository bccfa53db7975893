from __future__ import annotations

import pathlib

import pytest

from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import Behaviour, SandboxConfig


@pytest.fixture(scope="session")
def sandbox() -> SandboxThread:
    """One sandbox for the tests that only read it or add objects of their own."""
    with SandboxThread(SandboxConfig(items=12, bucket="session-bucket",
                                     behaviour=Behaviour(time_scale=0.002, seed=7))) as running:
        yield running


@pytest.fixture(scope="session")
def kubeconfig(sandbox: SandboxThread, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    sandbox.sandbox.write_kubeconfig(path)
    return path
