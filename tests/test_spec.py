"""parse_spec: defaults, one SpecError per bad field (naming it), and which listed keys are inputs."""
import copy

import pytest

from oscar_batch.spec import BatchSpec, SpecError, parse_spec


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
        oscar_endpoint="https://oscar.example.org",
        oscar_secret="oscar-creds",
        services_namespace="oscar-svc",
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
        headroom=0.8,
        retries=2,
        tolerated_failures=0,
        suspend=False,
    )


@pytest.mark.parametrize(("path", "value", "field", "expected"), [
    ("storage.prefix", DELETE, "manifest_key", "index.txt"),
    ("storage.prefix", DELETE, "prefix", ""),
    ("manifestKey", "lists/run1.txt", "manifest_key", "lists/run1.txt"),
    ("manifestKey", "lists/run1.txt", "results_key", "lists/run1.txt.results.json"),
    ("resultsKey", "out/results.json", "results_key", "out/results.json"),
    ("resultsKey", "out/results.json", "manifest_key", "input/index.txt"),
    ("oscar.servicesNamespace", "oscar-services", "services_namespace", "oscar-services"),
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
    ("service", "a" * 39, "service", "a" * 39),
    ("service", "x1", "service", "x1"),
    ("storage.bucket", "my.bucket-01", "bucket", "my.bucket-01"),
    ("storage.bucket", "abc", "bucket", "abc"),
    ("storage.bucket", "b" * 63, "bucket", "b" * 63),
])
def test_fields(path, value, field, expected):
    assert getattr(parse_spec(changed(path, value)), field) == expected


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
    ("itemsPerInvocation", -5, "spec.itemsPerInvocation"),
    ("maxParallelism", True, "spec.maxParallelism"),
    ("suspend", "false", "spec.suspend"),                          # bool("false") would be True
    ("manifestKey", "", "spec.manifestKey"),
    ("resultsKey", 5, "spec.resultsKey"),
    ("resultsKey", "input/index.txt", "spec.manifestKey and spec.resultsKey"),
])
def test_spec_errors_name_the_field(path, value, named):
    with pytest.raises(SpecError) as raised:
        parse_spec(changed(path, value))
    assert named in str(raised.value)


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
])
def test_is_input(storage, top, key, expected):
    spec = minimal(**top)
    spec["storage"].update(storage)
    assert parse_spec(spec).is_input(key) is expected
