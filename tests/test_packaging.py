"""What ships: the wheel, the CRD, the kustomize manifests and the examples agree with the code."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import yaml

from oscar_batch import spec as spec_module
from oscar_batch.sandbox import CRD_PATH
from support import BIN, kubectl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_standard_library_operator_module_is_not_shadowed():
    path = subprocess.run([sys.executable, "-c", "import operator; print(operator.__file__)"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert not path.startswith(str(ROOT)), path
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_the_wheel_holds_the_package_and_the_console_script(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path),
                    str(ROOT)], check=True, timeout=300)
    wheel, = tmp_path.glob("oscar_batch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("oscar_batch/", "oscar_batch-")) for n in names), names
    assert "oscar_batch/handlers.py" in names and "oscar_batch/sandbox/kube.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "oscar-batch = oscar_batch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _crd_schema() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crd_defaults_are_the_operators_defaults():
    properties = _crd_schema()["properties"]["spec"]["properties"]
    minimal = {"service": "s", "oscar": {"endpoint": "http://o", "credentialsSecret": "o"},
               "storage": {"endpoint": "http://s", "credentialsSecret": "s", "bucket": "bkt"}}
    parsed = spec_module.parse_spec(minimal)
    assert properties["itemsPerInvocation"]["default"] == parsed.items_per_invocation
    assert properties["maxParallelism"]["default"] == parsed.max_parallelism
    assert properties["capacityHeadroom"]["default"] == parsed.headroom
    assert properties["retries"]["default"] == parsed.retries
    assert properties["toleratedFailures"]["default"] == parsed.tolerated_failures
    assert properties["suspend"]["default"] == parsed.suspend
    assert properties["oscar"]["properties"]["servicesNamespace"]["default"] == parsed.services_namespace
    assert properties["storage"]["properties"]["region"]["default"] == parsed.s3_region
    assert properties["service"]["maxLength"] == 39


def test_printer_columns_read_fields_the_status_schema_has():
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    status_fields = _crd_schema()["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        root, field = column["jsonPath"].lstrip(".").split(".", 1)
        assert root == "metadata" or field in status_fields, column
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Progress", "Parallelism", "Items",
                                                                         "Age"]


def test_kustomize_renders_crd_rbac_and_a_deployment_using_the_service_account(tmp_path):
    rendered = subprocess.run([str(BIN / "kubectl"), "kustomize", str(ROOT / "manifests")], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    assert ("CustomResourceDefinition", "oscarbatchjobs.batch.oscarbatch.dev") in documents
    deployment = documents[("Deployment", "oscar-batch-operator")]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    binding = documents[("ClusterRoleBinding", "oscar-batch-operator")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "oscar-batch-system"}]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "run" and container["image"].startswith("ghcr.io/")
    rules = documents[("ClusterRole", "oscar-batch-operator")]["rules"]
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for needed in [("batch.oscarbatch.dev", "oscarbatchjobs", "watch"), ("batch.oscarbatch.dev", "oscarbatchjobs/status", "patch"),
                   ("", "nodes", "list"), ("", "pods", "list"), ("batch", "jobs", "watch"), ("", "secrets", "get"),
                   ("", "events", "create")]:
        assert needed in granted, needed


def test_the_example_batch_is_valid_and_applies(kubeconfig):
    example = ROOT / "examples" / "batchjob.yaml"
    parsed = spec_module.parse_spec(yaml.safe_load(example.read_text())["spec"])
    assert parsed.manifest_key == "input/index.txt" and parsed.is_input("input/2024/frame.jpg")
    assert not parsed.is_input("input/thumbnails/frame.jpg")
    assert "created" in kubectl(kubeconfig, "apply", "--validate=false", "-f", str(example)).stdout
