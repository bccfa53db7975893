import json
import subprocess
import sys

import pytest

from oscar_batch.cli import main


def node(name, cpu, memory, pods="110", ready="True", labels=None, taints=()):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": list(taints)},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def pod(node_name, cpu, memory, phase="Running"):
    requests = {"cpu": cpu, "memory": memory}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{node_name}", "namespace": "default"},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"requests": requests}}]},
        "status": {"phase": phase},
    }


def write_list(path, items):
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return str(path)


@pytest.fixture
def cluster(tmp_path):
    nodes = [
        node("cp", "4", "8Gi", labels={"node-role.kubernetes.io/control-plane": ""},
             taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node("w1", "8", "16Gi"),  # 8000m − 1500m = 6500m → 6; 16Gi − 2G ≈ 14.1Gi → 4 by memory
        node("w2", "3900m", "32768Mi"),  # 3900m − 1 = 2900m → 2 by cpu; 32Gi − 1Gi → 10
        node("w3", "16", "64Gi", ready="False"),
    ]
    pods = [pod("w1", "1.5", "2G"), pod("w2", "1000m", "1Gi"), pod("w2", "2", "2Gi", phase="Succeeded")]
    return write_list(tmp_path / "nodes.json", nodes), write_list(tmp_path / "pods.json", pods)


def run(capsys, *argv):
    code = main(["plan", "capacity", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_one_object_with_the_documented_keys(cluster, capsys):
    nodes, pods = cluster
    code, out, err = run(capsys, "--nodes", nodes, "--pods", pods, "--cpu", "1", "--memory", "3Gi", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["total", "nodes"]
    assert document["total"] == 6  # every slot: 4 + 2
    assert [list(entry) for entry in document["nodes"]] == [["name", "slots", "limitedBy", "reason"]] * 4
    assert [(n["name"], n["slots"], n["limitedBy"]) for n in document["nodes"]] == [
        ("cp", 0, "excluded"), ("w1", 4, "memory"), ("w2", 2, "cpu"), ("w3", 0, "excluded")]
    assert document["nodes"][3]["reason"] == "NotReady"


def test_json_explains_a_zero(cluster, capsys):
    nodes, pods = cluster
    code, out, _ = run(capsys, "--nodes", nodes, "--pods", pods, "--cpu", "7", "--memory", "1Gi", "--json")
    document = json.loads(out)
    assert (code, document["total"]) == (0, 0)
    assert document["explanation"] == "largest free CPU on any eligible node is 6500m; the service needs 7000m"


def test_table_by_default(cluster, capsys):
    nodes, pods = cluster
    code, out, _ = run(capsys, "--nodes", nodes, "--pods", pods, "--cpu", "1", "--memory", "3Gi", "--max", "3",
                       "--headroom", "1")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NODE", "SLOTS", "LIMITED", "BY", "REASON"]
    assert lines[2].split()[:3] == ["w1", "4", "memory"]
    assert "free cpu 6500m, memory 14.13Gi, pods 109" in lines[2]
    assert lines[-1] == "total 3: 6 slots × headroom 1, at most 3"


def test_options_for_gpu_and_overhead(cluster, capsys):
    nodes, pods = cluster
    code, out, _ = run(capsys, "--nodes", nodes, "--pods", pods, "--cpu", "500m", "--memory", "1Gi",
                       "--overhead-cpu", "0.5", "--overhead-memory", "2Gi", "--headroom", "1", "--json")
    # Per pod 1000m and 3Gi: the same fit as above.
    assert json.loads(out)["total"] == 6
    code, out, _ = run(capsys, "--nodes", nodes, "--pods", pods, "--cpu", "1", "--memory", "1Gi", "--gpu", "1",
                       "--json")
    assert {n["limitedBy"] for n in json.loads(out)["nodes"]} == {"excluded", "gpu"}


def test_oscar_status_fallback(tmp_path, capsys):
    current = {"cluster": {"nodes": [
        {"name": "w1", "cpu": {"capacity_cores": 4000, "usage_cores": 0, "request_cores": 1200},
         "memory": {"capacity_bytes": 8589934592, "usage_bytes": 0, "request_bytes": 0}, "gpu": 0,
         "is_interlink": False, "status": "Ready", "conditions": [{"type": "Ready", "status": True}]}]}}
    legacy = {"detail": [{"nodeName": "w1", "cpuCapacity": "4000", "cpuUsage": "900",
                          "memoryCapacity": "8589934592", "memoryUsage": "2147483648"}]}
    # current: 4000m − 1200m requested → 2 slots; legacy: 4000m − 900m used → 3 slots
    for document, total in ((current, 2), (legacy, 3)):
        path = tmp_path / "status.json"
        path.write_text(json.dumps(document))
        code, out, _ = run(capsys, "--oscar-status", str(path), "--cpu", "1", "--memory", "1Gi", "--json")
        assert (code, json.loads(out)["total"]) == (0, total)


def test_runs_as_the_installed_command(cluster):
    nodes, pods = cluster
    result = subprocess.run(
        [sys.executable, "-m", "oscar_batch", "plan", "capacity", "--nodes", nodes, "--pods", pods, "--cpu", "1",
         "--memory", "3Gi", "--json"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["total"] == 6


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--nodes", "{missing}", "--pods", "{pods}"], "cannot read {missing}: No such file or directory"),
        (["--nodes", "{garbage}", "--pods", "{pods}"], "{garbage} is not JSON"),
        (["--nodes", "{not_a_list}", "--pods", "{pods}"], "{not_a_list} is not a Kubernetes List"),
        (["--nodes", "{nodes}", "--pods", "{bad_pods}"], "pod default/p-w1: not a quantity: 'lots'"),
        (["--nodes", "{nodes}", "--pods", "{pods}", "--memory", "3GB"], "not a quantity: '3GB'"),
        (["--nodes", "{nodes}", "--pods", "{pods}", "--cpu", "-1"], "cpu_millicores must not be negative"),
        (["--nodes", "{nodes}", "--pods", "{pods}", "--headroom", "80%"], "headroom must be a number in (0, 1]"),
        (["--nodes", "{nodes}", "--pods", "{pods}", "--max", "0"], "maximum must be at least 1"),
        (["--nodes", "{nodes}"], "give --nodes and --pods"),
        (["--nodes", "{nodes}", "--pods", "{pods}", "--oscar-status", "{nodes}"],
         "give either --oscar-status or --nodes and --pods, not both"),
        (["--oscar-status", "{nodes}"], "not an OSCAR /system/status"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, cluster, capsys, arguments, message):
    nodes, pods = cluster
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[]")
    paths = {
        "nodes": nodes, "pods": pods, "missing": str(tmp_path / "missing.json"),
        "garbage": str(tmp_path / "garbage.json"), "not_a_list": str(tmp_path / "list.json"),
        "bad_pods": write_list(tmp_path / "bad-pods.json", [pod("w1", "lots", "1Gi")]),
    }
    # A later --cpu or --memory in the case overrides these (argparse keeps the last).
    argv = ["--cpu", "1", "--memory", "1Gi", *(argument.format(**paths) for argument in arguments)]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"oscar-batch: error: {message.format(**paths)}")
    assert err.count("\n") == 1 and err.endswith("\n")
