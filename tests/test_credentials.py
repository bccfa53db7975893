"""Which Secrets a batch may take its credentials from: opted in by label, never a ServiceAccount token."""
import base64

import pytest

from oscar_batch.core.credentials import OPT_IN_LABEL, refusal, values


def secret(labels=None, type_="Opaque", **data):
    return {"metadata": {"name": "s", "namespace": "team", "labels": labels},
            "type": type_, "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


@pytest.mark.parametrize(("the_secret", "refused"), [
    (secret({OPT_IN_LABEL: "true"}), None),
    (secret({OPT_IN_LABEL: "true", "app": "x"}, type_="kubernetes.io/basic-auth"), None),
    (secret(None), "Secret team/s is not labelled batch.oscarbatch.dev/credentials=true"),
    (secret({}), "Secret team/s is not labelled"),
    (secret({OPT_IN_LABEL: "false"}), "is not labelled"),
    (secret({OPT_IN_LABEL: "True"}), "is not labelled"),                    # label values are exact
    (secret({"oscar-batch": "true"}), "is not labelled"),
    (secret(None, type_="kubernetes.io/service-account-token"), "holds a ServiceAccount token"),
    # a ServiceAccount token stays out even when someone labelled it
    (secret({OPT_IN_LABEL: "true"}, type_="kubernetes.io/service-account-token"), "holds a ServiceAccount token"),
    ({}, "Secret ?/? is not labelled"),
])
def test_refusal(the_secret, refused):
    reason = refusal(the_secret)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_refusal_says_how_to_opt_in():
    assert refusal(secret(None)).endswith(f"(kubectl label secret s {OPT_IN_LABEL}=true)")


def test_values_decodes_the_named_keys_only():
    the_secret = secret({OPT_IN_LABEL: "true"}, username="oscar", password="pä55", other="x")
    the_secret["data"]["broken"] = "not base64!"
    assert values(the_secret, ("username", "password", "token", "broken")) == {"username": "oscar",
                                                                                "password": "pä55"}
    assert values({}, ("username",)) == {}
