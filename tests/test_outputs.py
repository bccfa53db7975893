"""Declared outputs (core/outputs.py, spec.outputs): templates, the default rule, the index of outputs found, the
time rules of re-analysis in place, and the placement check."""
import datetime

import pytest

from oscar_batch.core.outputs import (
    OutputIndex,
    OutputsSpec,
    default_stands_for,
    output_names,
    parts,
    service_output_prefix,
    template_problem,
)
from oscar_batch.core.spec import SpecError, parse_spec

T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


def at(hours: float) -> datetime.datetime:
    return T0 + datetime.timedelta(hours=hours)


@pytest.mark.parametrize(("relative", "expected"), [
    ("a/b.jpg", {"key": "a/b.jpg", "dir": "a/", "name": "b.jpg", "stem": "b", "ext": ".jpg"}),
    ("b.tar.gz", {"key": "b.tar.gz", "dir": "", "name": "b.tar.gz", "stem": "b.tar", "ext": ".gz"}),
    ("x/y/README", {"key": "x/y/README", "dir": "x/y/", "name": "README", "stem": "README", "ext": ""}),
    ("x/.env", {"key": "x/.env", "dir": "x/", "name": ".env", "stem": ".env", "ext": ""}),
    ("d/tab\tand\nline é.jpg", {"key": "d/tab\tand\nline é.jpg", "dir": "d/", "name": "tab\tand\nline é.jpg",
                                "stem": "tab\tand\nline é", "ext": ".jpg"}),
])
def test_an_inputs_key_splits_into_the_placeholders(relative, expected):
    assert parts(relative) == expected


@pytest.mark.parametrize(("template", "problem"), [
    ("{key}.json", None),
    ("{dir}{stem}/detections.json", None),
    ("{dir}{stem}{ext}.csv", None),
    ("{path}.json", "unknown placeholder(s) {path}"),
    ("{key.upper}.json", "unknown placeholder"),
    ("{key!r}.json", "format spec or conversion"),
    ("{key:>10}.json", "format spec or conversion"),
    ("{dir}summary.json", "one output for many inputs"),
    ("results.json", "one output for many inputs"),
    ("{key.json", "not a template"),
    ("{{literal}}-{key}", None),
])
def test_a_template_names_one_output_per_input_with_known_placeholders(template, problem):
    found = template_problem(template)
    assert (found is None) if problem is None else (problem in found)


def test_templates_name_outputs_relative_to_the_output_prefix():
    assert output_names(["{key}.json", "{dir}{stem}.csv"], "cam1/f.jpg") == ["cam1/f.jpg.json", "cam1/f.csv"]


@pytest.mark.parametrize(("output", "stands_for"), [
    ("a/b.json", "a/b"), ("a/b.jpg.json", "a/b.jpg"), ("a/b", None), ("a/.json", None), ("b.json", "b"),
])
def test_under_the_default_rule_an_output_stands_for_its_name_without_its_last_extension(output, stands_for):
    assert default_stands_for(output) == stands_for


def index(outputs: OutputsSpec, *found: tuple[str, datetime.datetime | None]) -> OutputIndex:
    built = OutputIndex(outputs)
    for name, modified in found:
        built.add(name, modified)
    return built.freeze()


DEFAULT = OutputsSpec(bucket="b", prefix="output/")


@pytest.mark.parametrize(("outputs", "found", "input_", "done"), [
    (DEFAULT, ["a/b.json"], "a/b.jpg", True),              # the input without its extension, then any extension
    (DEFAULT, ["a/b.jpg.json"], "a/b.jpg", True),          # ... or with it
    (DEFAULT, ["a/b.jpg.json"], "a/b.png", False),
    (DEFAULT, ["a/bb.json"], "a/b.jpg", False),
    (DEFAULT, ["b.json"], "a/b.jpg", False),               # the same name in another folder is another input's
    (DEFAULT, ["a/b"], "a/b.jpg", False),                  # an output without an extension stands for nothing
    (DEFAULT, [], "a/b.jpg", False),
    (OutputsSpec(bucket="b", prefix="o/", templates=("{key}.json", "{dir}{stem}.png")),
     ["a/b.jpg.json", "a/b.png"], "a/b.jpg", True),
    (OutputsSpec(bucket="b", prefix="o/", templates=("{key}.json", "{dir}{stem}.png")),
     ["a/b.jpg.json"], "a/b.jpg", False),                  # several templates: all must exist
])
def test_an_input_is_done_when_its_outputs_exist(outputs, found, input_, done):
    assert index(outputs, *((name, at(1)) for name in found)).done(input_, at(0)) is done


@pytest.mark.parametrize(("written_after", "newer_than_input", "output_at", "input_at", "done"), [
    (None, False, 1, 5, True),
    (at(2), False, 1, 0, False),     # written before the new model: it does not count
    (at(2), False, 3, 0, True),
    (None, True, 1, 5, False),       # the input was replaced after its output was written
    (None, True, 6, 5, True),
])
def test_for_re_analysis_in_place_older_outputs_do_not_count(written_after, newer_than_input, output_at, input_at,
                                                               done):
    outputs = OutputsSpec(bucket="b", prefix="o/", written_after=written_after, newer_than_input=newer_than_input)
    assert index(outputs, ("a.json", at(output_at))).done("a.jpg", at(input_at)) is done


def test_an_output_whose_time_the_storage_did_not_give_counts_unless_a_time_rule_needs_it():
    assert index(DEFAULT, ("a.json", None)).done("a.jpg", None)
    assert index(DEFAULT, ("a.json", None)).done("a.jpg", at(5))
    assert not index(OutputsSpec(bucket="b", prefix="o/", newer_than_input=True), ("a.json", None)).done("a.jpg",
                                                                                                         at(5))


def test_of_several_outputs_for_one_input_the_newest_counts():
    outputs = OutputsSpec(bucket="b", prefix="o/", newer_than_input=True)
    assert index(outputs, ("a.json", at(1)), ("a.jpg.csv", at(9)), ("a.txt", at(3))).done("a.jpg", at(5))


def spec(**outputs):
    return {"service": "fish", "oscar": {"endpoint": "https://oscar", "credentialsSecret": "o"},
            "storage": {"endpoint": "https://s3", "credentialsSecret": "s", "bucket": "bkt", "prefix": "input/",
                        **outputs.pop("storage", {})},
            "outputs": outputs}


def test_declared_outputs_take_their_defaults():
    parsed = parse_spec(spec(prefix="output/")).outputs
    assert parsed == OutputsSpec(bucket="bkt", prefix="output/", templates=(), skip_existing=True)
    assert parse_spec(spec()).outputs.prefix is None            # the service's own output path, at start
    assert parse_spec(spec(key="{key}.json")).outputs.templates == ("{key}.json",)
    assert parse_spec(spec(writtenAfter="2026-11-01T00:00:00Z")).outputs.written_after == T0
    without = parse_spec(spec())
    assert parse_spec({**spec(), "outputs": None}).outputs is None and without.outputs is not None


@pytest.mark.parametrize(("outputs", "problem"), [
    ({"key": "{path}.json"}, "spec.outputs.key '{path}.json' has the unknown placeholder(s) {path}"),
    ({"key": 3}, "spec.outputs.key must be a template"),
    ({"key": ["{key}.json"] * 9}, "more than the 8 allowed"),
    ({"skipExisting": "no"}, "spec.outputs.skipExisting must be true or false"),
    ({"writtenAfter": "yesterday"}, "spec.outputs.writtenAfter must be a time with its offset"),
    ({"writtenAfter": "2026-11-01T00:00:00"}, "spec.outputs.writtenAfter must be a time with its offset"),
    ({"bucket": "A_B"}, "spec.outputs.bucket 'A_B' is invalid"),
    ({"prefix": "input/out/"}, "which the input prefix 'input/' and filters take for an input"),
    ({"prefix": "input/", "key": "{stem}.json"}, "take for an input"),
    ({"prefix": "", "key": "input/{key}.json"}, "take for an input"),
])
def test_bad_output_declarations_are_invalid_specs(outputs, problem):
    with pytest.raises(SpecError, match=None) as raised:
        parse_spec(spec(**outputs))
    assert problem in str(raised.value)


@pytest.mark.parametrize("outputs", [
    {"prefix": "output/"},
    {"prefix": "input/out/", "storage": {"include": ["*.jpg"]}},     # outputs inside, but the filters refuse them
    {"prefix": "input/out/", "storage": {"exclude": ["out/*"]}},
    {"prefix": "input/", "bucket": "other"},                         # another bucket
])
def test_outputs_beside_or_among_the_inputs_are_fine_when_no_output_is_an_input(outputs):
    assert parse_spec(spec(**outputs)).outputs is not None


MINIO_ELSEWHERE = {"minio": {"archive": {"endpoint": "https://archive.example.org:9000"}}}


@pytest.mark.parametrize(("output", "providers", "prefix"), [
    ({"storage_provider": "minio.default", "path": "bkt/fish/out"}, {}, "fish/out/"),
    ({"storage_provider": "minio", "path": "/bkt/fish/out/"}, {}, "fish/out/"),       # OSCAR's own MinIO
    ({"path": "bkt/out"}, {}, "out/"),                                                 # no provider: the default
    ({"storage_provider": "minio.default", "path": "bkt"}, {}, ""),                    # the bucket's root
    ({"storage_provider": "minio.default", "path": "other/out"}, {}, None),            # another bucket
    ({"storage_provider": "s3.aws", "path": "bkt/out"}, {}, None),                     # another storage
    ({"storage_provider": "minio.archive", "path": "bkt/out"}, MINIO_ELSEWHERE, None),  # a MinIO elsewhere
    ({"storage_provider": "minio.archive", "path": "bkt/out"},
     {"minio": {"archive": {"endpoint": "https://S3.example.org/"}}}, "out/"),         # the batch's endpoint
    ({"storage_provider": "minio.unknown", "path": "bkt/out"}, {}, None),
    (None, {}, None),
])
def test_the_default_output_prefix_is_the_services_first_output_on_the_batchs_storage(output, providers, prefix):
    service = {"output": [output] if output else [], "storage_providers": providers}
    assert service_output_prefix(service, bucket="bkt", s3_endpoint="https://s3.example.org") == prefix
