"""`oscar-batch-sandbox` as a person or another process uses it: a JSON line first, then kubectl and a plain
HTTP client written only from the OSCAR API reference."""
from __future__ import annotations

import io
import json
import pathlib
import signal
import subprocess

import minio
import requests

from support import BIN, kubectl, wait_until


def test_sandbox_command_serves_kubectl_and_the_oscar_api_until_interrupted(tmp_path: pathlib.Path):
    kubeconfig, manifests = tmp_path / "kubeconfig", tmp_path / "batch"
    process = subprocess.Popen(
        [str(BIN / "oscar-batch-sandbox"), "--kubeconfig", str(kubeconfig), "--items", "5",
         "--time-scale", "0.001", "--manifests", str(manifests)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert set(info) >= {"kubernetes", "s3", "oscar", "kubeconfig", "manifests"}
        assert info["s3"]["items"] == 5 and info["s3"]["accessKey"] and info["oscar"]["password"]

        nodes = kubectl(kubeconfig, "get", "nodes", "-o", "name").stdout.split()
        assert nodes == ["node/control-plane", "node/worker-1", "node/worker-2", "node/worker-3"]

        # As the original coordinator does: the manifest first, then one invocation over lines [1, 3).
        s3 = info["s3"]
        store = minio.Minio(s3["endpoint"].removeprefix("http://"), s3["accessKey"], s3["secretKey"], secure=False,
                            region=s3["region"])
        index = "".join(f"{s3['prefix']}frame-{n:06d}.jpg\n" for n in range(1, 6)).encode()
        store.put_object(s3["bucket"], f"{s3['prefix']}index.txt", io.BytesIO(index), len(index))

        oscar = info["oscar"]
        system = requests.Session()
        system.auth = (oscar["username"], oscar["password"])
        service = system.get(f"{oscar['endpoint']}/system/services/{oscar['service']}", timeout=10).json()
        invoked = requests.post(f"{oscar['endpoint']}/job/{oscar['service']}", data=json.dumps({"start": 1, "end": 3}),
                                headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
        assert invoked.status_code == 201 and invoked.content == b""

        def completed_jobs() -> list[str]:
            table = kubectl(kubeconfig, "get", "jobs", "-n", oscar["servicesNamespace"]).stdout
            return [line for line in table.splitlines()[1:] if "Complete" in line]

        wait_until(completed_jobs, timeout=30, message="the invocation's Job to complete")
        outputs = [obj.object_name for obj in store.list_objects(s3["bucket"], prefix="output/", recursive=True)]
        assert outputs == ["output/frame-000001.jpg.json", "output/frame-000002.jpg.json"]

        # The hand-off files apply as they are.
        applied = kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifests)).stdout
        assert "oscarbatchjob.batch.oscarbatch.dev/fish-detector-batch created" in applied
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert not kubeconfig.exists()


def test_sandbox_command_rejects_bad_options(tmp_path: pathlib.Path):
    result = subprocess.run([str(BIN / "oscar-batch-sandbox"), "--kubeconfig", str(tmp_path / "k"),
                             "--failure-rate", "1.5"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "must be between 0 and 1" in result.stderr


def test_demo_succeeds(tmp_path: pathlib.Path):
    result = subprocess.run([str(BIN / "oscar-batch-demo"), "--items", "16", "--time-scale", "0.002"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Batch Succeeded" in result.stdout and "outputs written: 16" in result.stdout
