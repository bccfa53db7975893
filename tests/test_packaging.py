"""What ships: the wheel, the CRD, the kustomize manifests and the examples agree with the code."""
from __future__ import annotations

import configparser
import copy
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from oscar_batch.controller.metrics import BATCH, Metrics
from oscar_batch.core import spec as spec_module
from oscar_batch_sandbox import CRD_PATH
from support import BIN, kubectl

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENDPOINTS_CONFIG_MAP = "oscar-batch-endpoints"
MINIMAL_SPEC = {"service": "s", "oscar": {"endpoint": "http://o", "credentialsSecret": "o"},
                "storage": {"endpoint": "http://s", "credentialsSecret": "s", "bucket": "bkt"}}


def test_the_standard_library_operator_module_is_not_shadowed():
    path = subprocess.run([sys.executable, "-c", "import operator; print(operator.__file__)"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert not path.startswith(str(ROOT)), path
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_every_controller_module_has_its_place_in_the_controller_layers():
    # import-linter checks only the modules a contract names: one left out may import anything.
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    named = set(re.findall(r"[\w.]+", contracts["importlinter:contract:controller"]["layers"]))
    controller = ROOT / "operator" / "oscar_batch" / "controller"
    modules = {path.stem for path in controller.glob("*.py") if path.stem != "__init__"} | \
              {path.parent.name for path in controller.glob("*/__init__.py")}
    assert modules - named == set(), "add them to the layers of [importlinter:contract:controller]"


# Run inside an installed copy (it comes first on the path, before the editable checkout): the sandbox's own
# libraries are out of reach, as in the operator's image.
WITHOUT_SANDBOX = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"oscar_batch_sandbox", "kmock", "moto"}:
            raise ImportError(f"{name} is not part of the operator")
sys.meta_path.insert(0, Refuse())
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("wheels")
    for project in (ROOT, ROOT / "sandbox"):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--wheel-dir", str(directory), str(project)], check=True, timeout=300)
    return directory


def _install(wheels: pathlib.Path, target: pathlib.Path, *patterns: str) -> None:
    found = [str(path) for pattern in patterns for path in wheels.glob(pattern)]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), *found],
                   check=True, timeout=300)


def _run_installed(target: pathlib.Path, code: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})


def test_the_operator_wheel_holds_only_the_operator_and_runs_without_the_sandbox(wheels, tmp_path):
    wheel, = wheels.glob("oscar_batch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("oscar_batch/", "oscar_batch-")) for n in names), names
    assert "oscar_batch/controller/handlers.py" in names and "oscar_batch/core/planner.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "oscar-batch = oscar_batch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert not re.search(r"^Requires-Dist: (kmock|moto|aiohttp)", metadata, re.M)

    _install(wheels, tmp_path / "site", "oscar_batch-*.whl")
    result = _run_installed(tmp_path / "site", WITHOUT_SANDBOX + "from oscar_batch.cli import main\n"
                            "import oscar_batch; assert 'site' in oscar_batch.__file__, oscar_batch.__file__\n"
                            "main(['run', '--help'])", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: oscar-batch run" in result.stdout


def test_the_sandbox_wheel_carries_the_crd_and_its_commands(wheels, tmp_path):
    wheel, = wheels.glob("oscar_batch_sandbox-*.whl")
    archive = zipfile.ZipFile(wheel)
    assert archive.read("oscar_batch_sandbox/batchjob.yaml") == (ROOT / "crds" / "batchjob.yaml").read_bytes()
    entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "oscar-batch-sandbox = oscar_batch_sandbox.cli:sandbox_main" in entry_points
    assert "oscar-batch-demo = oscar_batch_sandbox.cli:demo_main" in entry_points

    _install(wheels, tmp_path / "site", "oscar_batch-*.whl", "oscar_batch_sandbox-*.whl")
    result = _run_installed(tmp_path / "site",
                            "import oscar_batch_sandbox as s; assert s.CRD_PATH.is_file(), s.CRD_PATH\n"
                            "assert 'site' in str(s.CRD_PATH)\n"
                            "from oscar_batch_sandbox.cli import demo_main\n"
                            "raise SystemExit(demo_main(['--items', '8', '--time-scale', '0.002']))", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Batch Succeeded" in result.stdout and "outputs: 8 under" in result.stdout


def _crd_schema() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crd_defaults_are_the_operators_defaults():
    properties = _crd_schema()["properties"]["spec"]["properties"]
    parsed = spec_module.parse_spec(MINIMAL_SPEC)
    assert properties["itemsPerInvocation"]["default"] == parsed.items_per_invocation
    assert properties["maxParallelism"]["default"] == parsed.max_parallelism
    assert properties["capacityHeadroom"]["default"] == parsed.headroom
    assert properties["retries"]["default"] == parsed.retries
    assert properties["toleratedFailures"]["default"] == parsed.tolerated_failures
    assert properties["suspend"]["default"] == parsed.suspend
    assert properties["redrive"]["default"] == parsed.redrive
    assert properties["keepManifest"]["default"] == parsed.keep_manifest
    assert properties["keepJobs"]["default"] == parsed.keep_jobs
    assert "default" not in properties["oscar"]["properties"]["servicesNamespace"]   # the service's own
    assert parsed.clusters[0].services_namespace is None
    assert properties["oscar"]["properties"]["access"]["default"] == parsed.clusters[0].access
    cluster_properties = properties["clusters"]["items"]["properties"]
    assert cluster_properties["access"]["default"] == parsed.clusters[0].access
    assert cluster_properties["maxParallelism"]["default"] == parsed.clusters[0].max_parallelism
    assert properties["clusters"]["maxItems"] == spec_module.MAX_CLUSTERS
    assert cluster_properties["name"]["maxLength"] == spec_module.MAX_CLUSTER_NAME_LENGTH
    assert properties["storage"]["properties"]["region"]["default"] == parsed.s3_region
    assert properties["service"]["maxLength"] == 39


# How far past each bound keyword the first refused value lies; the item keywords bound each array element.
BOUND_KEYWORDS = {"maximum": 1, "minimum": -1, "maxLength": 1, "minLength": -1, "maxItems": 1,
                  "items.maxLength": 1, "items.minLength": -1}


def _bounds(schema: dict, path: str = ""):
    """(field path, keyword, value at the bound or None, value one past it) for each bound below `schema`."""
    for name, field in schema.get("properties", {}).items():
        field_path = f"{path}{name}"
        sample = _lookup(MINIMAL_SPEC, field_path, default=field.get("default", "a"))
        for keyword, step in BOUND_KEYWORDS.items():
            item_keyword = keyword.removeprefix("items.")
            bound = field.get("items", {}).get(item_keyword) if item_keyword != keyword else field.get(keyword)
            if bound is None:
                continue
            at, past = (_bounded(keyword, sample, bound + offset) for offset in (0, step))
            if keyword == "minimum" and field.get("exclusiveMinimum"):
                at, past = None, at
            yield field_path, keyword, at, past
        yield from _bounds(field, f"{field_path}.")


def _lookup(spec: dict, path: str, default):
    for name in path.split("."):
        if not isinstance(spec, dict) or name not in spec:
            return default
        spec = spec[name]
    return spec


def _bounded(keyword: str, sample, size):
    """A value like `sample` (valid apart from its size) of that size: a number, a length, or a count of items."""
    if keyword in ("maximum", "minimum"):
        return size
    if keyword == "maxItems":
        return ["a"] * size
    if keyword.startswith("items."):
        return ["a" * size]
    return (sample + "a" * size)[:size]


def _with(path: str, value) -> dict:
    spec = copy.deepcopy(MINIMAL_SPEC)
    *parents, leaf = path.split(".")
    target = spec
    for parent in parents:
        target = target.setdefault(parent, {})
    target[leaf] = value
    return spec


SPEC_BOUNDS = list(_bounds(_crd_schema()["properties"]["spec"]))


@pytest.mark.parametrize(("path", "keyword", "at", "past"),
                         [pytest.param(*bound, id=f"{bound[0]}-{bound[1]}") for bound in SPEC_BOUNDS])
def test_the_operator_applies_every_bound_of_the_crd(path, keyword, at, past):
    """Read from the CRD, so a bound added there and not in parse_spec (or the other way) fails here."""
    names_the_field = f"spec.{path} "
    with pytest.raises(spec_module.SpecError) as raised:
        spec_module.parse_spec(_with(path, past))
    assert names_the_field in str(raised.value)
    if at is not None:
        try:
            spec_module.parse_spec(_with(path, at))
        except spec_module.SpecError as error:  # e.g. the longest prefix makes the default manifest key too long
            assert names_the_field not in str(error), error


def test_the_bounds_test_sees_the_bounds():
    keywords = {(path, keyword) for path, keyword, *_ in SPEC_BOUNDS}
    for expected in [("retries", "maximum"), ("toleratedFailures", "maximum"), ("redrive", "maximum"),
                     ("capacityHeadroom", "minimum"), ("storage.bucket", "minLength"),
                     ("oscar.servicesNamespace", "maxLength"), ("storage.include", "maxItems"),
                     ("storage.exclude", "items.maxLength")]:
        assert expected in keywords, expected


def test_crd_patterns_are_the_operators():
    properties = _crd_schema()["properties"]["spec"]["properties"]
    assert properties["service"]["pattern"] == spec_module.DNS_LABEL.pattern
    assert properties["oscar"]["properties"]["servicesNamespace"]["pattern"] == spec_module.DNS_LABEL.pattern
    assert properties["oscar"]["properties"]["endpoint"]["pattern"] == spec_module.ENDPOINT.pattern
    assert properties["storage"]["properties"]["endpoint"]["pattern"] == spec_module.S3_ENDPOINT.pattern


def test_crd_refuses_the_bucket_names_the_operator_refuses():
    bucket = _crd_schema()["properties"]["spec"]["properties"]["storage"]["properties"]["bucket"]
    rules = [validation["rule"] for validation in bucket["x-kubernetes-validations"]]
    assert f"!self.matches('{spec_module.BUCKET_IP_ADDRESS.pattern}')" in rules
    refused = " && ".join(rules)
    for run in spec_module.BUCKET_FORBIDDEN_RUNS:
        assert f"!self.contains('{run}')" in refused, run
    for suffix in spec_module.BUCKET_RESERVED_SUFFIXES:
        assert f"!self.endsWith('{suffix}')" in refused, suffix


def test_the_operator_pins_the_fields_the_crd_keeps_immutable():
    rule = _crd_schema()["x-kubernetes-validations"][0]["rule"]
    assert tuple(re.findall(r"\bself\.(spec\.[\w.]+) == oldSelf\.\1\b", rule)) == spec_module.IMMUTABLE_FIELDS


def test_status_pinned_has_a_schema_for_each_pinned_field():
    """The API server prunes fields its schema lacks: an unlisted pinned field would vanish silently."""
    schema = _crd_schema()["properties"]["status"]["properties"]["pinned"]["properties"]
    pinned = spec_module.pinned_fields(spec_module.parse_spec(MINIMAL_SPEC))
    json_types = {str: "string", list: "array", dict: "object"}
    assert {key: json_types[type(value)] for key, value in pinned.items()} == \
        {key: field["type"] for key, field in schema.items()}


def test_printer_columns_read_fields_the_schema_has():
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    for column in version["additionalPrinterColumns"]:
        root, *path = column["jsonPath"].lstrip(".").split(".")
        if root == "metadata":
            continue
        fields = _crd_schema()["properties"][root]["properties"]
        for step in path[:-1]:
            fields = fields[step]["properties"]
        assert path[-1] in fields, column
    columns = [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [("Phase", 0), ("Progress", 0), ("Running", 0), ("Failed", 0), ("Reason", 0), ("Age", 0),
                       ("Parallelism", 1), ("Items", 1), ("Started", 1), ("Completed", 1), ("Service", 1),
                       ("Clusters", 1)]


def test_kustomize_renders_crd_rbac_and_a_deployment_using_the_service_account(tmp_path):
    rendered = subprocess.run([str(BIN / "kubectl"), "kustomize", str(ROOT / "manifests")], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    crd = documents[("CustomResourceDefinition", "oscarbatchjobs.batch.oscarbatch.dev")]
    assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"   # before any OscarBatchJob
    deployment = documents[("Deployment", "oscar-batch-operator")]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    binding = documents[("ClusterRoleBinding", "oscar-batch-operator")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "oscar-batch-system"}]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "run" and container["image"].startswith("ghcr.io/")
    rules = documents[("ClusterRole", "oscar-batch-operator")]["rules"]
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for needed in [("batch.oscarbatch.dev", "oscarbatchjobs", "watch"),
                   ("batch.oscarbatch.dev", "oscarbatchjobs/status", "patch"),
                   ("", "nodes", "list"), ("", "pods", "list"), ("batch", "jobs", "watch"), ("", "secrets", "get"),
                   ("", "events", "create")]:
        assert needed in granted, needed


def test_the_example_batch_is_valid_and_applies(kubeconfig):
    example = ROOT / "examples" / "batchjob.yaml"
    parsed = spec_module.parse_spec(yaml.safe_load(example.read_text())["spec"])
    assert parsed.manifest_key == "input/index.txt" and parsed.is_input("input/2024/frame.jpg")
    assert not parsed.is_input("input/thumbnails/frame.jpg")
    assert "created" in kubectl(kubeconfig, "apply", "--validate=false", "-f", str(example)).stdout


def test_the_federated_example_is_valid_and_applies(kubeconfig):
    example = ROOT / "examples" / "federated-batchjob.yaml"
    parsed = spec_module.parse_spec(yaml.safe_load(example.read_text())["spec"])
    assert [(cluster.name, cluster.access, cluster.max_parallelism) for cluster in parsed.clusters] == [
        ("local", "InCluster", 0), ("ai4eosc", "Remote", 20)]
    assert parsed.outputs is not None and parsed.outputs.prefix == "output/"
    assert "created" in kubectl(kubeconfig, "apply", "--validate=false", "-f", str(example)).stdout


def test_the_monitoring_overlay_scrapes_the_metrics_port_and_alerts_on_metrics_that_exist():
    rendered = subprocess.run([str(BIN / "kubectl"), "kustomize", str(ROOT / "manifests" / "overlays" / "monitoring")],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    deployment = documents[("Deployment", "oscar-batch-operator")]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert container["args"][container["args"].index("--metrics") + 1].endswith(f":{metrics_port['containerPort']}")
    service = documents[("Service", "oscar-batch-operator-metrics")]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = documents[("ServiceMonitor", "oscar-batch-operator")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    exported = {family.name for family in Metrics().registry.collect()}
    [rule] = documents[("PrometheusRule", "oscar-batch-operator")]["spec"]["groups"][0]["rules"]
    used = set(re.findall(r"oscar_batch_[a-z_]+", rule["expr"]))
    assert used and used <= exported, used - exported
    # The batch's own `namespace` label kept: without honorLabels it would become `exported_namespace`.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_the_stall_alert_joins_per_batch_aggregates_only():
    """Two replicas' series of one batch (a takeover, until the next scrape) must not break the alert: each
    metric enters the expression aggregated by exactly the batch's labels, and every match is on those."""
    documents = _render(ROOT / "manifests" / "overlays" / "monitoring")
    [rule] = next(d for (kind, _, _), d in documents.items() if kind == "PrometheusRule")["spec"]["groups"][0]["rules"]
    expr = rule["expr"]
    batch_labels = set(BATCH)

    def labels(listed: str) -> set[str]:
        return {label.strip() for label in listed.split(",")}

    metrics = re.findall(r"oscar_batch_[a-z_]+", expr)
    aggregated = re.findall(r"\b(?:sum|max|min) by \(([^)]*)\) \((oscar_batch_[a-z_]+)", expr)
    assert sorted(name for _, name in aggregated) == sorted(metrics), expr
    assert all(labels(by) == batch_labels for by, _ in aggregated), expr
    matches = re.findall(r"\bon \(([^)]*)\)", expr)
    assert matches and all(labels(on) == batch_labels for on in matches), expr
    assert not re.search(r"\b(ignoring|group_left|group_right)\b", expr), expr
    # What each metric carries besides the batch's labels: only the one the expression selects on.
    exported = Metrics()
    exported.batch("default", "batch").status_taken({"items": {"pending": 1}, "invocations": {"running": 1},
                                                     "parallelism": 1})
    samples = {sample.name: set(sample.labels) for family in exported.registry.collect() for sample in family.samples}
    for name in metrics:
        assert batch_labels <= samples[name] <= batch_labels | {"state"}, (name, samples[name])
    summary = rule["annotations"]["summary"]
    assert {"$labels.namespace", "$labels.batch"} <= set(re.findall(r"\$labels\.[a-z]+", summary))


def _render(overlay: pathlib.Path) -> dict[tuple[str, str, str | None], dict]:
    rendered = subprocess.run([str(BIN / "kubectl"), "kustomize", str(overlay)], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in yaml.safe_load_all(rendered)}


def _container(documents: dict) -> dict:
    deployment = next(d for (kind, _, _), d in documents.items() if kind == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _granted(role: dict) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.mark.parametrize("install", [ROOT / "manifests", ROOT / "manifests" / "overlays" / "namespaced",
                                     ROOT / "manifests" / "overlays" / "remote"])
def test_the_deployment_allows_https_only_to_the_hosts_of_its_config_map_none_by_default(install):
    documents = _render(install)
    container = _container(documents)
    config = next(d for (kind, name, _), d in documents.items() if kind == "ConfigMap"
                  and name.startswith(f"{ENDPOINTS_CONFIG_MAP}-"))      # kustomize's hash: a change rolls the pods
    assert config["data"] == {"oscar": "", "s3": ""}
    args = container["args"]
    assert "--allow-http" not in args
    variables = {variable["name"]: variable["valueFrom"]["configMapKeyRef"] for variable in container["env"]
                 if "configMapKeyRef" in variable.get("valueFrom", {})}
    for flag, key in (("--allow-oscar", "oscar"), ("--allow-s3", "s3")):
        variable = args[args.index(flag) + 1].removeprefix("$(").removesuffix(")")
        assert variables[variable] == {"name": config["metadata"]["name"], "key": key}


def test_the_deployment_runs_two_peering_replicas_with_a_readiness_probe_and_a_disruption_budget():
    documents = _render(ROOT / "manifests")
    deployment = documents[("Deployment", "oscar-batch-operator", "oscar-batch-system")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = _container(documents)
    args = container["args"]
    assert args[args.index("--peering") + 1] == "oscar-batch"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz" and args[args.index("--readiness") + 1].endswith(f":{ports[probe['port']]}")
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    budget = documents[("PodDisruptionBudget", "oscar-batch-operator", "oscar-batch-system")]
    assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in _granted(
        documents[("ClusterRole", "oscar-batch-operator", None)])
    for crd in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        assert documents[("CustomResourceDefinition", crd, None)]["metadata"]["annotations"][
            "argocd.argoproj.io/sync-wave"] == "-1"


def test_the_namespaced_overlay_grants_roles_in_two_namespaces_and_nothing_cluster_wide():
    documents = _render(ROOT / "manifests" / "overlays" / "namespaced")
    kinds = {kind for kind, _, _ in documents}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, kinds
    # The namespaces' ConfigMap is for the replacements only; the endpoints' one is the operator's.
    assert [name.rsplit("-", 1)[0] for kind, name, _ in documents if kind == "ConfigMap"] == [ENDPOINTS_CONFIG_MAP]
    batches = _granted(documents[("Role", "oscar-batch-operator", "default")])
    services = _granted(documents[("Role", "oscar-batch-operator-jobs", "oscar-svc")])
    assert ("", "secrets", "get") in batches and not any(resource == "secrets" for _, resource, _ in services)
    assert {("batch", "jobs", "list"), ("batch", "jobs", "watch"), ("", "pods", "list")} <= services
    assert ("batch.oscarbatch.dev", "oscarbatchjobs/status", "patch") in batches
    for binding, namespace in (("oscar-batch-operator", "default"), ("oscar-batch-operator-jobs", "oscar-svc")):
        assert documents[("RoleBinding", binding, namespace)]["subjects"] == [
            {"kind": "ServiceAccount", "name": "oscar-batch-operator", "namespace": "oscar-batch-system"}]
    args = _container(documents)["args"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--namespace"] == ["default", "oscar-svc"]
    assert "--peering" in args and "--readiness" in args


def test_the_remote_overlay_reads_no_jobs_pods_or_nodes_and_grants_one_role_in_the_batches_namespace():
    documents = _render(ROOT / "manifests" / "overlays" / "remote")
    kinds = {kind for kind, _, _ in documents}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, kinds
    assert {(kind, namespace) for kind, _, namespace in documents if kind in ("Role", "RoleBinding")} == {
        ("Role", "default"), ("RoleBinding", "default")}
    granted = _granted(documents[("Role", "oscar-batch-operator", "default")])
    assert not {resource for _, resource, _ in granted} & {"jobs", "pods", "nodes", "localqueues", "clusterqueues"}
    assert {("", "secrets", "get"), ("batch.oscarbatch.dev", "oscarbatchjobs/status", "patch")} <= granted
    args = _container(documents)["args"]
    assert "--remote-only" in args and [args[i + 1] for i, arg in enumerate(args) if arg == "--namespace"] == [
        "default"]


def test_the_namespaced_overlays_namespaces_are_set_in_one_place(tmp_path):
    for directory in ("crds", "manifests"):
        shutil.copytree(ROOT / directory, tmp_path / directory)
    kustomization = tmp_path / "manifests" / "overlays" / "namespaced" / "kustomization.yaml"
    text = kustomization.read_text()
    assert "batches=default " in text and "services=oscar-svc " in text
    kustomization.write_text(text.replace("batches=default ", "batches=research ")
                             .replace("services=oscar-svc ", "services=oscar-research "))
    documents = _render(kustomization.parent)
    namespaced = {(kind, namespace) for kind, _, namespace in documents if kind in ("Role", "RoleBinding")}
    assert namespaced == {("Role", "research"), ("RoleBinding", "research"), ("Role", "oscar-research"),
                          ("RoleBinding", "oscar-research")}
    args = _container(documents)["args"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--namespace"] == ["research", "oscar-research"]


def test_the_release_overlay_references_the_image_by_digest():
    image = _container(_render(ROOT / "manifests" / "overlays" / "release"))["image"]
    assert re.fullmatch(r"ghcr\.io/oscar-batch/oscar-batch-operator@sha256:[0-9a-f]{64}", image), image
