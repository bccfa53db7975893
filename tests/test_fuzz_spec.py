"""Specs generated from the CRD's own OpenAPI schema: whatever the API server's structural validation accepts
either parses or is a SpecError naming the field, never another exception; and what parses gives an S3 client.

hypothesis-jsonschema (0.23) fails inside current Hypothesis, so the strategy is built here from the few
keywords the spec schema uses. CEL rules (x-kubernetes-validations) are left out: parse_spec repeats them, so a
spec only CEL would refuse must be a SpecError too. Patterns are Go RE2 as the API server runs them: `\\s` there is
ASCII whitespace only, `$` the end of the text.
"""
from __future__ import annotations

import pathlib
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oscar_batch.clients import manifest
from oscar_batch.core.spec import SpecError, parse_spec

CRD = pathlib.Path(__file__).resolve().parent.parent / "crds" / "batchjob.yaml"
SPEC_SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
INT64 = 2**63 - 1
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the API server's structural validation accepts for `schema` (unknown fields it would prune are
    never generated)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40))
        return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
    kind = schema["type"]
    if kind == "object":
        properties, required = schema.get("properties", {}), set(schema.get("required", ()))
        return st.fixed_dictionaries({name: from_schema(properties[name]) for name in properties if name in required},
                                     optional={name: from_schema(sub) for name, sub in properties.items()
                                               if name not in required})
    if kind == "string":
        shortest, longest = schema.get("minLength", 0), schema.get("maxLength", 64)
        if "pattern" in schema:
            re2 = schema["pattern"].replace(r"\s", "\t\n\f\r ")
            return st.from_regex(re2, fullmatch=True).filter(lambda text: shortest <= len(text) <= longest)
        return st.one_of(st.text(min_size=shortest, max_size=min(longest, 40)),
                         st.text(min_size=max(shortest, longest - 2), max_size=longest))  # at the bound too
    if kind == "integer":
        return st.integers(schema.get("minimum", -INT64 - 1), schema.get("maximum", INT64))
    if kind == "number":
        exclusive = schema.get("exclusiveMinimum") is True
        floats = st.floats(schema.get("minimum"), schema.get("maximum"), exclude_min=exclusive, allow_nan=False)
        low = schema.get("minimum", 0)
        whole = st.integers(low + 1 if exclusive else low, schema.get("maximum", INT64))  # JSON 1 is a number too
        return st.one_of(floats, whole)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=schema.get("maxItems", 8))
    raise AssertionError(f"the spec schema grew a type this generator does not know: {kind}")


def assert_parses_or_names_the_field(document: Any) -> None:
    try:
        spec = parse_spec(document)
    except SpecError as error:
        assert str(error).startswith("spec"), error      # names the field (spec.x.y) or the spec itself
        return
    manifest.client(spec, "access", "secret")             # what parses, S3 takes: no ValueError at the first call
    assert spec.uri(spec.manifest_key).startswith(f"s3://{spec.bucket}/")
    spec.is_input(spec.prefix + "x")


@FUZZ
@given(from_schema(SPEC_SCHEMA))
def test_what_the_schema_accepts_parses_or_is_a_spec_error(document):
    assert_parses_or_names_the_field(document)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)


@FUZZ
@given(from_schema(SPEC_SCHEMA), st.data())
def test_any_json_in_one_field_is_a_spec_error_at_worst(document, data):
    """An API server without the CRD's schema (an older CRD, a hand-made object) stores anything: one field of
    a valid spec replaced by arbitrary JSON still gives a SpecError, never a crash."""
    parent, schema = document, SPEC_SCHEMA
    while True:
        name = data.draw(st.sampled_from(sorted(schema["properties"])))
        if schema["properties"][name].get("type") == "object" and name in parent and data.draw(st.booleans()):
            parent, schema = parent[name], schema["properties"][name]
            continue
        parent[name] = data.draw(JSON)
        break
    assert_parses_or_names_the_field(document)
