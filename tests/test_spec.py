"""parse_spec: defaults, one SpecError per bad field (naming it), which listed keys are inputs, and pinning."""
import copy
import dataclasses
import json
import re

import pytest

from oscar_batch.core.spec import (
    IMMUTABLE_FIELDS,
    BatchSpec,
    ClusterSpec,
    SpecError,
    apply_pinned,
    parse_spec,
    pinned_fields,
)


def minimal(**top):
    spec = {
        "service": "fish-detector",
        "oscar": {"endpoint": "https://oscar.example.org", "credentialsSecret": "oscar-creds"},
        "storage": {"endpoint": "http://minio.minio:9000", "credentialsSecret": "s3-creds",
                    "bucket": "fish-detector", "prefix": "input/"},
    }
    spec.update(top)
    return spec


DELETE = object()


def changed(path, value):
    """The minimal spec with one field (a dotted path) set to `value`, or removed if it is DELETE."""
    spec = copy.deepcopy(minimal())
    *parents, leaf = path.split(".")
    target = spec
    for parent in parents:
        target = target[parent]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return spec


def test_defaults():
    assert parse_spec(minimal()) == BatchSpec(
        service="fish-detector",
        # The service definition says where its Jobs are; the operator runs in that cluster.
        clusters=(ClusterSpec(name="oscar", endpoint="https://oscar.example.org", secret="oscar-creds",
                              services_namespace=None, access="InCluster", max_parallelism=0),),
        s3_endpoint="http://minio.minio:9000",
        s3_region="us-east-1",
        s3_secret="s3-creds",
        bucket="fish-detector",
        prefix="input/",
        include=(),
        exclude=(),
        manifest_key="input/index.txt",
        results_key="input/index.txt.results.json",
        items_per_invocation=0,
        max_parallelism=0,
        headroom=1.0,
        retries=2,
        tolerated_failures=0,
        suspend=False,
        redrive=0,
        keep_manifest=False,
        keep_jobs=False,
    )


@pytest.mark.parametrize(("path", "value", "field", "expected"), [
    ("storage.prefix", DELETE, "manifest_key", "index.txt"),
    ("storage.prefix", DELETE, "prefix", ""),
    ("manifestKey", "lists/run1.txt", "manifest_key", "lists/run1.txt"),
    ("manifestKey", "lists/run1.txt", "results_key", "lists/run1.txt.results.json"),
    ("resultsKey", "out/results.json", "results_key", "out/results.json"),
    ("resultsKey", "out/results.json", "manifest_key", "input/index.txt"),
    ("storage.region", "eu-west-1", "s3_region", "eu-west-1"),
    ("storage.include", ["*.jpg", "*.png"], "include", ("*.jpg", "*.png")),
    ("storage.exclude", ["thumbs/*"], "exclude", ("thumbs/*",)),
    ("itemsPerInvocation", 25, "items_per_invocation", 25),
    ("maxParallelism", 8, "max_parallelism", 8),
    ("capacityHeadroom", 1, "headroom", 1.0),
    ("capacityHeadroom", 0.5, "headroom", 0.5),
    ("retries", 0, "retries", 0),
    ("toleratedFailures", 3, "tolerated_failures", 3),
    ("suspend", True, "suspend", True),
    ("redrive", 3, "redrive", 3),
    ("redrive", 1_000_000, "redrive", 1_000_000),
    ("keepManifest", True, "keep_manifest", True),
    ("keepJobs", True, "keep_jobs", True),
    ("retries", 100, "retries", 100),
    ("itemsPerInvocation", 1_000_000, "items_per_invocation", 1_000_000),
    ("maxParallelism", 100_000, "max_parallelism", 100_000),
    ("toleratedFailures", 100_000_000, "tolerated_failures", 100_000_000),
    ("storage.endpoint", "https://minio.example.org/", "s3_endpoint", "https://minio.example.org/"),
    ("storage.endpoint", "http://[::1]:9000", "s3_endpoint", "http://[::1]:9000"),
    ("storage.endpoint", "http://10.0.0.5:65535/", "s3_endpoint", "http://10.0.0.5:65535/"),
    ("storage.region", "my_region-2", "s3_region", "my_region-2"),
    ("storage.region", "r" * 63, "s3_region", "r" * 63),
    ("storage.include", ["*.jpg"] * 64, "include", ("*.jpg",) * 64),
    ("storage.exclude", ["x" * 1024], "exclude", ("x" * 1024,)),
    ("service", "a" * 39, "service", "a" * 39),
    ("service", "x1", "service", "x1"),
    ("storage.bucket", "my.bucket-01", "bucket", "my.bucket-01"),
    ("storage.bucket", "abc", "bucket", "abc"),
    ("storage.bucket", "b" * 63, "bucket", "b" * 63),
    ("storage.bucket", "192.168.1.1a", "bucket", "192.168.1.1a"),
    ("storage.bucket", "fish-s3alias-2", "bucket", "fish-s3alias-2"),  # reserved only as a suffix
    ("storage.bucket", "xn--fish", "bucket", "xn--fish"),              # the client refuses it on AWS only
])
def test_fields(path, value, field, expected):
    assert getattr(parse_spec(changed(path, value)), field) == expected


@pytest.mark.parametrize(("path", "value", "field", "expected"), [
    ("oscar.servicesNamespace", "oscar-services", "services_namespace", "oscar-services"),
    ("oscar.servicesNamespace", "n" * 63, "services_namespace", "n" * 63),
    ("oscar.endpoint", "https://oscar.example.org/api/", "endpoint", "https://oscar.example.org/api/"),
    ("oscar.access", "Remote", "access", "Remote"),
    ("oscar.access", "InCluster", "access", "InCluster"),
])
def test_the_one_cluster_of_spec_oscar(path, value, field, expected):
    (cluster,) = parse_spec(changed(path, value)).clusters
    assert getattr(cluster, field) == expected and cluster.name == "oscar"


def federated(*clusters: dict) -> dict:
    spec = minimal()
    del spec["oscar"]
    spec["clusters"] = list(clusters)
    return spec


UPV = {"name": "upv", "endpoint": "https://oscar.upv.example", "credentialsSecret": "oscar-upv", "access": "Remote",
       "maxParallelism": 0}
LOCAL = {"name": "local", "endpoint": "https://oscar.local.example", "credentialsSecret": "oscar-local"}


def test_several_clusters_in_the_order_given():
    assert parse_spec(federated(UPV, {**LOCAL, "maxParallelism": 8, "servicesNamespace": "svc"})).clusters == (
        ClusterSpec(name="upv", endpoint="https://oscar.upv.example", secret="oscar-upv", services_namespace=None,
                    access="Remote", max_parallelism=0),
        ClusterSpec(name="local", endpoint="https://oscar.local.example", secret="oscar-local",
                    services_namespace="svc", access="InCluster", max_parallelism=8))


@pytest.mark.parametrize(("spec", "named"), [
    ({**federated(UPV), "oscar": {"endpoint": "https://o", "credentialsSecret": "s"}}, "in spec.clusters, not both"),
    (federated(), "spec.clusters must be a list of 1 to 16"),
    (federated(*[{**UPV, "name": f"c{index}"} for index in range(17)]), "spec.clusters must be a list of 1 to 16"),
    (federated(UPV, UPV), "spec.clusters names upv more than once"),
    (federated(LOCAL, {**LOCAL, "name": "other"}), "more than one InCluster cluster"),
    (federated({**UPV, "access": "remote"}), "spec.clusters[0].access must be InCluster or Remote"),
    (federated({**UPV, "name": "UPV"}), "spec.clusters[0].name"),
    (federated({**UPV, "name": "u" * 33}), "spec.clusters[0].name"),
    (federated(UPV, {**LOCAL, "endpoint": "oscar.local"}), "spec.clusters[1].endpoint"),
    (federated({**UPV, "maxParallelism": -1}), "spec.clusters[0].maxParallelism"),
    (federated({**UPV, "maxParallelism": True}), "spec.clusters[0].maxParallelism"),
    (federated({**UPV, "maxParallelism": 100_001}), "spec.clusters[0].maxParallelism"),
    (federated({k: v for k, v in UPV.items() if k != "credentialsSecret"}), "spec.clusters[0].credentialsSecret"),
    (federated("upv"), "spec.clusters[0] must be an object"),
    ({**minimal(), "oscar": {"endpoint": "https://o", "credentialsSecret": "s", "access": "Both"}},
     "spec.oscar.access must be InCluster or Remote"),
])
def test_bad_clusters_are_named(spec, named):
    with pytest.raises(SpecError, match=re.escape(named)):
        parse_spec(spec)


@pytest.mark.parametrize(("path", "value", "named"), [
    ("service", DELETE, "spec.service is required"),
    ("service", "", "spec.service"),
    ("service", "a" * 40, "spec.service"),                         # OSCAR service names: at most 39 chars
    ("service", "Fish", "spec.service"),
    ("service", "fish_detector", "spec.service"),
    ("service", "-fish", "spec.service"),
    ("service", "fish-", "spec.service"),
    ("service", "fish\n", "spec.service"),                          # e.g. a YAML block scalar
    ("service", 7, "spec.service"),
    ("oscar", DELETE, "spec.oscar"),
    ("oscar", "https://oscar", "spec.oscar"),
    ("oscar.endpoint", "oscar.example.org", "spec.oscar.endpoint"),
    ("oscar.endpoint", "ftp://oscar.example.org", "spec.oscar.endpoint"),
    ("oscar.endpoint", "https://oscar.example.org\n", "spec.oscar.endpoint"),
    # credentials come from Secrets only, and a `?` or `#` would swallow the paths the client appends
    ("oscar.endpoint", "https://user:pass@oscar.example.org", "spec.oscar.endpoint"),
    ("oscar.endpoint", "https://oscar.example.org@evil.example", "spec.oscar.endpoint"),
    ("oscar.endpoint", "https://evil.example?oscar.example.org", "spec.oscar.endpoint"),
    ("oscar.endpoint", "https://evil.example/#oscar.example.org", "spec.oscar.endpoint"),
    ("oscar.endpoint", "https://oscar.example.org/api?x=1", "spec.oscar.endpoint"),
    ("storage.endpoint", "https://ak:sk@minio.example.org", "spec.storage.endpoint"),
    ("storage.endpoint", "https://minio.example.org?", "spec.storage.endpoint"),
    ("storage.endpoint", "https://minio.example.org#x", "spec.storage.endpoint"),
    ("oscar.credentialsSecret", DELETE, "spec.oscar.credentialsSecret"),
    ("oscar.servicesNamespace", "", "spec.oscar.servicesNamespace"),
    ("storage", DELETE, "spec.storage"),
    ("storage.endpoint", DELETE, "spec.storage.endpoint"),
    ("storage.credentialsSecret", "", "spec.storage.credentialsSecret"),
    ("storage.bucket", DELETE, "spec.storage.bucket"),
    ("storage.bucket", "ab", "spec.storage.bucket"),
    ("storage.bucket", "b" * 64, "spec.storage.bucket"),
    ("storage.bucket", "Fish-Detector", "spec.storage.bucket"),   # uppercase
    ("storage.bucket", "fish..detector", "spec.storage.bucket"),  # two adjacent periods
    ("storage.bucket", "fish_detector", "spec.storage.bucket"),
    ("storage.bucket", "-fish", "spec.storage.bucket"),
    ("storage.bucket", "fish.", "spec.storage.bucket"),
    ("storage.bucket", "fish\n", "spec.storage.bucket"),
    ("storage.bucket", "192.168.1.1", "spec.storage.bucket"),     # looks like an IP address
    ("storage.bucket", "999.1.1.1", "spec.storage.bucket"),
    ("storage.bucket", "fish.-detector", "spec.storage.bucket"),  # a period next to a hyphen
    ("storage.bucket", "fish-.detector", "spec.storage.bucket"),
    ("storage.bucket", "fish-s3alias", "spec.storage.bucket"),    # reserved by S3
    ("storage.bucket", "fish--ol-s3", "spec.storage.bucket"),
    ("storage.endpoint", "http://minio.minio:9000/s3", "spec.storage.endpoint"),  # a path: the client wants a host
    ("storage.endpoint", "http://minio.minio:9000//", "spec.storage.endpoint"),
    ("storage.endpoint", "http://" + "m" * 2042, "spec.storage.endpoint"),
    ("oscar.endpoint", "https://oscar.example.org/" + "a" * 2023, "spec.oscar.endpoint"),
    ("oscar.credentialsSecret", "s" * 254, "spec.oscar.credentialsSecret"),
    ("storage.credentialsSecret", "s" * 254, "spec.storage.credentialsSecret"),
    ("oscar.servicesNamespace", "n" * 64, "spec.oscar.servicesNamespace"),
    ("oscar.servicesNamespace", "OSCAR-svc", "spec.oscar.servicesNamespace"),
    ("oscar.servicesNamespace", "oscar.svc", "spec.oscar.servicesNamespace"),
    ("storage.region", "r" * 64, "spec.storage.region"),            # the S3 client takes 63 at most
    ("storage.region", ":", "spec.storage.region"),                 # found by tests/test_fuzz_spec.py
    ("storage.region", "-eu", "spec.storage.region"),
    ("storage.region", "eu west", "spec.storage.region"),
    ("storage.endpoint", "http://[", "spec.storage.endpoint"),      # found by tests/test_fuzz_spec.py
    ("storage.endpoint", "http://[::1", "spec.storage.endpoint"),
    ("storage.endpoint", "http://[zz::1]", "spec.storage.endpoint"),
    ("storage.endpoint", "http://minio:99999", "spec.storage.endpoint"),
    ("storage.endpoint", "http://minio:port", "spec.storage.endpoint"),
    ("storage.endpoint", "http://user:pw@minio", "spec.storage.endpoint"),
    ("storage.endpoint", "http://minio?x=1", "spec.storage.endpoint"),
    ("storage.endpoint", "http://minio#top", "spec.storage.endpoint"),
    ("storage.region", "", "spec.storage.region"),
    ("storage.prefix", "p" * 1025, "spec.storage.prefix"),
    ("storage.prefix", "p" * 1020, "spec.manifestKey"),             # its default, <prefix>index.txt, is too long
    ("manifestKey", "m" * 1025, "spec.manifestKey"),
    ("manifestKey", "m" * 1020, "spec.resultsKey"),                 # <manifestKey>.results.json
    ("resultsKey", "r" * 1025, "spec.resultsKey"),
    ("storage.include", ["*.jpg"] * 65, "spec.storage.include"),
    ("storage.exclude", ["x" * 1025], "spec.storage.exclude"),
    ("storage.prefix", 3, "spec.storage.prefix"),
    ("storage.include", "*.jpg", "spec.storage.include"),          # not a list
    ("storage.include", ["*.jpg", ""], "spec.storage.include"),
    ("storage.exclude", {"thumbs/*": True}, "spec.storage.exclude"),
    ("storage.exclude", [3], "spec.storage.exclude"),
    ("capacityHeadroom", 0, "spec.capacityHeadroom"),
    ("capacityHeadroom", 1.5, "spec.capacityHeadroom"),
    ("capacityHeadroom", -0.2, "spec.capacityHeadroom"),
    ("capacityHeadroom", "0.8", "spec.capacityHeadroom"),
    ("capacityHeadroom", True, "spec.capacityHeadroom"),
    ("capacityHeadroom", float("nan"), "spec.capacityHeadroom"),
    ("retries", -1, "spec.retries"),
    ("retries", True, "spec.retries"),                             # bool where an int is expected
    ("retries", 1.0, "spec.retries"),
    ("retries", "2", "spec.retries"),
    ("toleratedFailures", -1, "spec.toleratedFailures"),
    ("toleratedFailures", False, "spec.toleratedFailures"),
    ("toleratedFailures", 100_000_001, "spec.toleratedFailures"),
    ("retries", 101, "spec.retries"),
    ("itemsPerInvocation", -5, "spec.itemsPerInvocation"),
    ("itemsPerInvocation", 1_000_001, "spec.itemsPerInvocation"),
    ("maxParallelism", True, "spec.maxParallelism"),
    ("maxParallelism", 100_001, "spec.maxParallelism"),
    ("redrive", -1, "spec.redrive"),
    ("redrive", 1_000_001, "spec.redrive"),
    ("redrive", "1", "spec.redrive"),
    ("keepManifest", "true", "spec.keepManifest"),
    ("keepManifest", 1, "spec.keepManifest"),
    ("keepJobs", "yes", "spec.keepJobs"),
    ("suspend", "false", "spec.suspend"),                          # bool("false") would be True
    ("manifestKey", "", "spec.manifestKey"),
    ("resultsKey", 5, "spec.resultsKey"),
    ("resultsKey", "input/index.txt", "spec.manifestKey and spec.resultsKey"),
])
def test_spec_errors_name_the_field(path, value, named):
    with pytest.raises(SpecError) as raised:
        parse_spec(changed(path, value))
    assert named in str(raised.value)


def test_a_refused_endpoint_is_shown_without_its_password():
    with pytest.raises(SpecError) as raised:
        parse_spec(minimal(oscar={"endpoint": "https://oscar:s3cr3t@oscar.example.org", "credentialsSecret": "o"}))
    assert "'https://[redacted]@oscar.example.org' is invalid" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_keys_may_be_as_long_as_s3_allows():
    longest = minimal(manifestKey="m" * 1024, resultsKey="r" * 1024)
    longest["storage"]["prefix"] = "p" * 1024
    parsed = parse_spec(longest)
    assert (parsed.prefix, parsed.manifest_key, parsed.results_key) == ("p" * 1024, "m" * 1024, "r" * 1024)


def test_manifest_and_results_keys_must_differ_when_both_set():
    with pytest.raises(SpecError, match="spec.manifestKey and spec.resultsKey"):
        parse_spec(minimal(manifestKey="x/list.txt", resultsKey="x/list.txt"))


@pytest.mark.parametrize(("storage", "top", "key", "expected"), [
    ({}, {}, "input/a.jpg", True),
    ({}, {}, "input/sub/dir/a.txt", True),
    ({}, {}, "input/index.txt", False),                             # the manifest itself
    ({}, {}, "input/index.txt.results.json", False),                # the results manifest
    ({"include": ["*.jpg"]}, {}, "input/a.jpg", True),
    ({"include": ["*.jpg"]}, {}, "input/sub/a.jpg", True),          # `*` crosses '/' (fnmatch)
    ({"include": ["*.jpg"]}, {}, "input/a.JPG", False),             # case-sensitive
    ({"include": ["*.jpg"]}, {}, "input/a.png", False),
    ({"include": ["*.jpg"]}, {}, "input/index.txt", False),
    ({"include": ["*.jpg", "*.png"]}, {}, "input/a.png", True),
    ({"include": ["*.txt"]}, {}, "input/index.txt", False),         # matched, but it is the manifest
    ({"include": ["*.txt"]}, {}, "input/notes.txt", True),
    ({"include": ["*.jpg"], "exclude": ["thumbs/*"]}, {}, "input/thumbs/a.jpg", False),
    ({"include": ["*.jpg"], "exclude": ["thumbs/*"]}, {}, "input/thumbs/deep/a.jpg", False),
    ({"include": ["*.jpg"], "exclude": ["thumbs/*"]}, {}, "input/photos/thumbs/a.jpg", True),  # relative to prefix
    ({"include": ["*.jpg"], "exclude": ["thumbs/*"]}, {}, "input/photos/a.jpg", True),
    ({"exclude": ["*.tmp"]}, {}, "input/a.tmp", False),
    ({"exclude": ["*.tmp"]}, {}, "input/a.jpg", True),
    ({"include": ["input/*.jpg"]}, {}, "input/a.jpg", False),       # patterns are relative to the prefix
    ({"prefix": ""}, {}, "index.txt", False),
    ({"prefix": "", "include": ["*.jpg"]}, {}, "photos/a.jpg", True),
    ({"include": ["*.txt"]}, {"manifestKey": "input/list.txt"}, "input/list.txt", False),
    ({"include": ["*.txt"]}, {"manifestKey": "input/list.txt"}, "input/index.txt", True),  # not ours any more
    ({}, {"resultsKey": "input/done.json"}, "input/done.json", False),
    ({}, {}, "input/index.txt.unlisted.json", False),               # the inputs left out of the manifest
    ({}, {"manifestKey": "l.txt"}, "input/l.txt.unlisted.json", True),
    ({}, {"manifestKey": "l.txt"}, "l.txt.unlisted.json", False),
    ({}, {}, "input/photos/", False),                               # a directory marker
    ({"include": ["*"]}, {}, "input/", False),
    ({}, {}, "input/ photo.jpg ", True),                            # spaces at either end: an input, as listed
    ({}, {}, "input/a\rb.jpg", True),                              # an input; whether it is listable is keys'
])
def test_is_input(storage, top, key, expected):
    spec = minimal(**top)
    spec["storage"].update(storage)
    assert parse_spec(spec).is_input(key) is expected


def test_immutable_fields_are_the_pinned_ones():
    assert IMMUTABLE_FIELDS == ("spec.service", "spec.storage.bucket", "spec.storage.prefix",
                                "spec.storage.include", "spec.storage.exclude", "spec.manifestKey", "spec.outputs")


def test_pinned_fields_are_json_in_the_spec_spelling():
    spec = minimal(manifestKey="lists/run1.txt")
    spec["storage"].update(include=["*.jpg"], exclude=["thumbs/*"])
    pinned = pinned_fields(parse_spec(spec))
    assert pinned == {"service": "fish-detector", "bucket": "fish-detector", "prefix": "input/",
                      "include": ["*.jpg"], "exclude": ["thumbs/*"], "manifestKey": "lists/run1.txt",
                      "outputs": {}}
    assert json.loads(json.dumps(pinned)) == pinned


def test_the_resolved_manifest_key_is_pinned():
    assert pinned_fields(parse_spec(minimal()))["manifestKey"] == "input/index.txt"


STARTED = pinned_fields(parse_spec(minimal()))


@pytest.mark.parametrize(("path", "value", "changed_fields"), [
    ("retries", 5, []),                                             # tuning may change
    ("suspend", True, []),
    ("redrive", 1, []),
    ("resultsKey", "out/results.json", []),
    ("service", "fish-detector-v3", ["spec.service"]),
    ("storage.bucket", "another-bucket", ["spec.storage.bucket"]),
    ("storage.prefix", "other/", ["spec.storage.prefix", "spec.manifestKey"]),  # the default key moved with it
    ("storage.include", ["*.png"], ["spec.storage.include"]),
    ("storage.exclude", ["*.tmp"], ["spec.storage.exclude"]),
    ("manifestKey", "input/index-2.txt", ["spec.manifestKey"]),
    ("manifestKey", "input/index.txt", []),                        # spelled out, but the same object
])
def test_apply_pinned_restores_what_changed_after_the_start(path, value, changed_fields):
    live = parse_spec(changed(path, value))
    restored, changed_paths = apply_pinned(live, STARTED)
    assert changed_paths == changed_fields
    assert pinned_fields(restored) == STARTED
    # Nothing else moves: the tuning fields keep their live values.
    pinned_and_derived = ("service", "bucket", "prefix", "include", "exclude", "manifest_key", "results_key")
    assert dataclasses.replace(restored, **{name: getattr(live, name) for name in pinned_and_derived}) == live


def test_apply_pinned_reports_every_changed_field_in_order():
    spec = minimal(service="other", manifestKey="x.txt")
    spec["storage"].update(bucket="other-bucket", include=["*.png"])
    assert apply_pinned(parse_spec(spec), STARTED)[1] == ["spec.service", "spec.storage.bucket",
                                                          "spec.storage.include", "spec.manifestKey"]


OUTPUTS = {"prefix": "output/", "key": "{key}.json", "writtenAfter": "2026-11-01T00:00:00Z"}


def test_declared_outputs_are_pinned_as_json_and_read_back_the_same():
    spec = parse_spec(minimal(outputs=OUTPUTS))
    pinned = pinned_fields(spec)
    assert pinned["outputs"] == {"bucket": "fish-detector", "prefix": "output/", "key": ["{key}.json"],
                                 "skipExisting": True, "newerThanInput": False,
                                 "writtenAfter": "2026-11-01T00:00:00+00:00"}
    assert json.loads(json.dumps(pinned)) == pinned
    assert apply_pinned(spec, pinned) == (spec, [])


def test_an_outputs_prefix_resolved_at_the_start_is_kept_and_is_no_change():
    defaulted = parse_spec(minimal(outputs={"key": "{key}.json"}))
    resolved = dataclasses.replace(defaulted, outputs=dataclasses.replace(defaulted.outputs, prefix="results/"))
    restored, changed_paths = apply_pinned(defaulted, pinned_fields(resolved))
    assert (restored, changed_paths) == (resolved, [])


@pytest.mark.parametrize("live", [
    minimal(),                                                                      # removed
    minimal(outputs={**OUTPUTS, "key": "{stem}.csv"}),                              # another template
    minimal(outputs={**OUTPUTS, "prefix": "output/v2/"}),                           # another prefix
    minimal(outputs={**OUTPUTS, "skipExisting": False}),
])
def test_changed_outputs_are_reported_and_the_pinned_ones_kept(live):
    started = pinned_fields(parse_spec(minimal(outputs=OUTPUTS)))
    restored, changed_paths = apply_pinned(parse_spec(live), started)
    assert changed_paths == ["spec.outputs"]
    assert restored.outputs == parse_spec(minimal(outputs=OUTPUTS)).outputs


def test_outputs_declared_after_a_start_without_them_are_ignored():
    restored, changed_paths = apply_pinned(parse_spec(minimal(outputs=OUTPUTS)), STARTED)
    assert (restored.outputs, changed_paths) == (None, ["spec.outputs"])


def test_the_skipped_keys_object_is_no_input_and_no_results_key():
    spec = parse_spec(minimal())
    assert spec.skipped_key == "input/index.txt.skipped.json" and not spec.is_input(spec.skipped_key)
    with pytest.raises(SpecError, match="resultsKey"):
        parse_spec(minimal(resultsKey="input/index.txt.skipped.json"))


@pytest.mark.parametrize("pinned", [None, {}])
def test_nothing_pinned_changes_nothing(pinned):
    live = parse_spec(changed("service", "other"))
    assert apply_pinned(live, pinned) == (live, [])


@pytest.mark.parametrize(("pinned", "changed_fields", "service", "bucket"), [
    ({"service": "fish-detector"}, ["spec.service"], "fish-detector", "other-bucket"),
    ({"bucket": "fish-detector"}, ["spec.storage.bucket"], "other", "fish-detector"),
    ({"prefix": "input/"}, [], "other", "other-bucket"),
])
def test_a_key_missing_from_pinned_keeps_the_live_value(pinned, changed_fields, service, bucket):
    spec = minimal(service="other")
    spec["storage"]["bucket"] = "other-bucket"
    restored, changed_paths = apply_pinned(parse_spec(spec), pinned)
    assert (changed_paths, restored.service, restored.bucket) == (changed_fields, service, bucket)


@pytest.mark.parametrize(("path", "value", "key", "expected"), [
    # The prefix and globs the batch was listed with decide, not the edited ones.
    ("storage.prefix", "other/", "input/a.jpg", True),
    ("storage.prefix", "other/", "input/index.txt", False),                  # the pinned manifest
    ("storage.prefix", "other/", "input/index.txt.results.json", False),     # and its results, by default
    ("storage.include", ["*.png"], "input/a.jpg", True),
    ("storage.exclude", ["*.jpg"], "input/a.jpg", True),
    ("manifestKey", "input/index-2.txt", "input/index.txt", False),
    ("manifestKey", "input/index-2.txt", "input/index-2.txt", True),          # not the batch's object any more
    ("manifestKey", "input/index-2.txt", "input/index.txt.results.json", False),
])
def test_a_restored_spec_selects_inputs_as_the_started_one(path, value, key, expected):
    restored, _ = apply_pinned(parse_spec(changed(path, value)), STARTED)
    assert restored.is_input(key) is expected


@pytest.mark.parametrize(("top", "results_key"), [
    ({"manifestKey": "input/index-2.txt"}, "input/index.txt.results.json"),   # a defaulted resultsKey follows
    ({"manifestKey": "input/index-2.txt", "resultsKey": "out.json"}, "out.json"),  # an explicit one stays
    ({"resultsKey": "out.json"}, "out.json"),
])
def test_apply_pinned_keeps_the_results_key_consistent(top, results_key):
    restored, _ = apply_pinned(parse_spec(minimal(**top)), STARTED)
    assert (restored.manifest_key, restored.results_key) == ("input/index.txt", results_key)


def test_the_results_key_cannot_be_where_unlisted_inputs_go():
    with pytest.raises(SpecError, match="leaves out of the manifest"):
        parse_spec(minimal(manifestKey="x/list.txt", resultsKey="x/list.txt.unlisted.json"))
    live = parse_spec(minimal(manifestKey="input/index-2.txt", resultsKey="input/index.txt.unlisted.json"))
    with pytest.raises(SpecError, match="leaves out of the manifest"):
        apply_pinned(live, STARTED)


def test_a_results_key_onto_the_pinned_manifest_is_an_error():
    live = parse_spec(minimal(manifestKey="input/index-2.txt", resultsKey="input/index.txt"))
    with pytest.raises(SpecError, match="spec.resultsKey"):
        apply_pinned(live, STARTED)
