"""`oscar-batch-sandbox` as a person or another process uses it: a JSON line first, then kubectl and a plain
HTTP client written only from the OSCAR API reference."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import minio
import requests
import yaml

from oscar_batch_sandbox.cli import add_sandbox_options, config_from_args
from oscar_batch_sandbox.runner import EARLIER_RUN
from oscar_batch_sandbox.s3 import input_keys
from support import BIN, kubectl, wait_until


@contextlib.contextmanager
def sandbox_command(tmp_path: pathlib.Path, *options: str) -> Iterator[dict[str, Any]]:
    """`oscar-batch-sandbox` with a kubeconfig and hand-off manifests in `tmp_path`; yields its JSON line, and
    checks that Ctrl-C ends it cleanly."""
    kubeconfig, manifests = tmp_path / "kubeconfig", tmp_path / "batch"
    process = subprocess.Popen(
        [str(BIN / "oscar-batch-sandbox"), "--kubeconfig", str(kubeconfig), "--time-scale", "0.001",
         "--manifests", str(manifests), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert not kubeconfig.exists()


def store(info: dict[str, Any]) -> minio.Minio:
    s3 = info["s3"]
    return minio.Minio(s3["endpoint"].removeprefix("http://"), s3["accessKey"], s3["secretKey"], secure=False,
                       region=s3["region"])


def invoke_over(info: dict[str, Any], keys: list[str], start: int, end: int) -> None:
    """As the original coordinator does: the manifest of `keys` first, then one invocation over [start, end)."""
    s3, oscar = info["s3"], info["oscar"]
    index = "".join(f"{key}\n" for key in keys).encode()
    store(info).put_object(s3["bucket"], f"{s3['prefix']}index.txt", io.BytesIO(index), len(index))
    system = requests.Session()
    system.auth = (oscar["username"], oscar["password"])
    service = system.get(f"{oscar['endpoint']}/system/services/{oscar['service']}", timeout=10).json()
    invoked = requests.post(f"{oscar['endpoint']}/job/{oscar['service']}",
                            data=json.dumps({"start": start, "end": end}),
                            headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
    assert invoked.status_code == 201 and invoked.content == b""


def jobs_ended(kubeconfig: pathlib.Path, namespace: str, condition: str) -> list[str]:
    table = kubectl(kubeconfig, "get", "jobs", "-n", namespace).stdout
    return [line for line in table.splitlines()[1:] if condition in line]


def test_sandbox_command_serves_kubectl_and_the_oscar_api_until_interrupted(tmp_path: pathlib.Path):
    kubeconfig = tmp_path / "kubeconfig"
    with sandbox_command(tmp_path, "--items", "5") as info:
        assert set(info) >= {"kubernetes", "s3", "oscar", "clusters", "kubeconfig", "manifests"}
        assert info["clusters"] == [{"name": "oscar-1", "endpoint": info["oscar"]["endpoint"],
                                     "username": info["oscar"]["username"], "password": info["oscar"]["password"]}]
        assert info["s3"]["items"] == 5 and info["s3"]["accessKey"] and info["oscar"]["password"]
        assert info["s3"]["existingOutputs"] == 0 and info["s3"]["corruptInputs"] == []

        nodes = kubectl(kubeconfig, "get", "nodes", "-o", "name").stdout.split()
        assert nodes == ["node/control-plane", "node/worker-1", "node/worker-2", "node/worker-3"]

        invoke_over(info, input_keys(info["s3"]["prefix"], 5), 1, 3)
        wait_until(lambda: jobs_ended(kubeconfig, info["oscar"]["servicesNamespace"], "Complete"), timeout=30,
                   message="the invocation's Job to complete")
        outputs = [obj.object_name for obj in store(info).list_objects(info["s3"]["bucket"], prefix="output/",
                                                                        recursive=True)]
        assert outputs == ["output/frame-000001.jpg.json", "output/frame-000002.jpg.json"]

        # The hand-off files apply as they are.
        applied = kubectl(kubeconfig, "apply", "--validate=false", "-f", str(tmp_path / "batch")).stdout
        assert "oscarbatchjob.batch.oscarbatch.dev/fish-detector-batch created" in applied


def test_sandbox_command_seeds_corrupt_inputs_and_earlier_outputs_for_shares_of_the_inputs(tmp_path: pathlib.Path):
    kubeconfig = tmp_path / "kubeconfig"
    with sandbox_command(tmp_path, "--items", "20", "--corrupt", "0.1", "--existing-outputs", "0.5",
                         "--seed", "4") as info:
        s3 = info["s3"]
        corrupt = s3["corruptInputs"]
        assert s3["existingOutputs"] == 10 and len(corrupt) == 2 and set(corrupt) < set(input_keys("input/", 20))
        client = store(info)
        found = {obj.object_name: json.loads(client.get_object(s3["bucket"], obj.object_name).read())
                 for obj in client.list_objects(s3["bucket"], prefix=s3["outputPrefix"], recursive=True)}
        # Named as the service names its outputs, shaped as it writes them, and never for a corrupt input.
        assert len(found) == 10 and s3["outputPrefix"] == "output/"
        assert all(name == f"output/{body['input'].removeprefix('input/')}.json" and body["job"] == EARLIER_RUN
                   for name, body in found.items())
        assert not {body["input"] for body in found.values()} & set(corrupt)

        # The example batch declares where the outputs are, so that applying it skips the inputs that have one.
        [batch] = yaml.safe_load_all((tmp_path / "batch" / "10-batchjob.yaml").read_text())
        assert batch["spec"]["outputs"] == {"prefix": "output/"}

        # A corrupt input fails the invocation that reaches it, whatever its line in the manifest.
        invoke_over(info, [corrupt[0]], 1, 2)
        wait_until(lambda: jobs_ended(kubeconfig, info["oscar"]["servicesNamespace"], "Failed"), timeout=30,
                   message="the invocation over a corrupt input to fail")


def test_sandbox_command_with_two_clusters_lists_both_and_writes_a_batch_over_both(tmp_path: pathlib.Path):
    with sandbox_command(tmp_path, "--items", "4", "--clusters", "2") as info:
        assert [cluster["name"] for cluster in info["clusters"]] == ["oscar-1", "oscar-2"]
        assert info["clusters"][0]["endpoint"] == info["oscar"]["endpoint"] != info["clusters"][1]["endpoint"]
        for cluster in info["clusters"]:
            status = requests.get(f"{cluster['endpoint']}/system/status", timeout=10,
                                  auth=(cluster["username"], cluster["password"]))
            assert status.status_code == 200 and status.json()["cluster"]["nodes_count"] == 3

        secrets = list(yaml.safe_load_all((tmp_path / "batch" / "00-secrets.yaml").read_text()))
        assert [(secret["metadata"]["name"], secret["metadata"]["labels"]) for secret in secrets] == [
            (name, {"batch.oscarbatch.dev/credentials": "true"})
            for name in ("oscar-1-credentials", "oscar-2-credentials", "minio-credentials")]
        assert [secret["stringData"] for secret in secrets[:2]] == [
            {"username": cluster["username"], "password": cluster["password"]} for cluster in info["clusters"]]
        [batch] = yaml.safe_load_all((tmp_path / "batch" / "10-batchjob.yaml").read_text())
        assert "oscar" not in batch["spec"] and batch["spec"]["outputs"] == {"prefix": "output/"}
        assert batch["spec"]["clusters"] == [
            {"name": "oscar-1", "endpoint": info["clusters"][0]["endpoint"],
             "credentialsSecret": "oscar-1-credentials", "access": "InCluster", "maxParallelism": 0},
            {"name": "oscar-2", "endpoint": info["clusters"][1]["endpoint"],
             "credentialsSecret": "oscar-2-credentials", "access": "Remote", "maxParallelism": 0}]


def sandbox_config(*options: str):
    parser = argparse.ArgumentParser()
    add_sandbox_options(parser)
    return config_from_args(parser.parse_args(["--items", "200", *options]))


def test_the_inputs_drawn_corrupt_or_with_outputs_are_shares_of_the_inputs_and_the_same_for_a_seed():
    config = sandbox_config("--corrupt", "0.05", "--existing-outputs", "0.5", "--seed", "7")
    corrupt, existing = config.behaviour.corrupt_inputs, config.existing_outputs
    assert len(corrupt) == 10 and len(existing) == 100 and not corrupt & existing
    assert (corrupt | existing) <= set(input_keys("input/", 200))
    again = sandbox_config("--corrupt", "0.05", "--existing-outputs", "0.5", "--seed", "7")
    assert (again.behaviour.corrupt_inputs, again.existing_outputs) == (corrupt, existing)
    other = sandbox_config("--corrupt", "0.05", "--existing-outputs", "0.5", "--seed", "8")
    assert other.behaviour.corrupt_inputs != corrupt and other.existing_outputs != existing
    # Every input that can have an output has one; the corrupt ones never.
    full = sandbox_config("--corrupt", "0.05", "--existing-outputs", "1")
    assert len(full.existing_outputs) == 190 and not full.existing_outputs & full.behaviour.corrupt_inputs
    assert sandbox_config().existing_outputs == sandbox_config().behaviour.corrupt_inputs == frozenset()


def test_sandbox_command_rejects_bad_options(tmp_path: pathlib.Path):
    for option, value in (("--failure-rate", "1.5"), ("--corrupt", "-0.1"), ("--existing-outputs", "2")):
        result = subprocess.run([str(BIN / "oscar-batch-sandbox"), "--kubeconfig", str(tmp_path / "k"),
                                 option, value], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "must be between 0 and 1" in result.stderr, (option, result.stderr)
    for clusters in ("0", "17"):
        result = subprocess.run([str(BIN / "oscar-batch-sandbox"), "--kubeconfig", str(tmp_path / "k"),
                                 "--clusters", clusters], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "--clusters: must be between 1 and 16" in result.stderr, result.stderr


def test_demo_succeeds(tmp_path: pathlib.Path):
    result = subprocess.run([str(BIN / "oscar-batch-demo"), "--items", "16", "--time-scale", "0.002"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Batch Succeeded" in result.stdout and "outputs: 16 under s3://fish-detector/output/" in result.stdout
    assert "Apply the batch again" in result.stdout


def test_demo_with_earlier_outputs_and_corrupt_inputs_succeeds_naming_the_corrupt_ones(tmp_path: pathlib.Path):
    result = subprocess.run([str(BIN / "oscar-batch-demo"), "--items", "16", "--time-scale", "0.002",
                             "--existing-outputs", "0.5", "--corrupt", "0.125"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 already have an output under output/, 2 are corrupt" in result.stdout
    assert "Batch Succeeded" in result.stdout and "outputs: 14 under s3://fish-detector/output/ (8 there before" \
        in result.stdout
    assert result.stdout.count("  failed: line ") == 2
