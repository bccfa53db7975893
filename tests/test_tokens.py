"""OSCAR credentials from a Secret's keys, and OIDC access tokens: the pure rules, table by table."""
import pytest

from oscar_batch.core.tokens import (
    AccessToken,
    Basic,
    Bearer,
    RefreshKeys,
    grant_refusal_needs_a_person,
    granted,
    oscar_login,
    refresh_due,
    refresh_form,
    without,
)

KEYS = {"refreshToken": "rt", "tokenEndpoint": "https://aai.example.org/token", "clientId": "oidc-agent"}


@pytest.mark.parametrize(("values", "login"), [
    ({"username": "u", "password": "p"}, Basic("u", "p")),
    ({"token": "t"}, Bearer("t")),
    ({"token": "t", "username": "u", "password": "p"}, Bearer("t")),               # the token first, as before
    (KEYS, RefreshKeys("https://aai.example.org/token", "oidc-agent", "rt")),
    ({**KEYS, "token": "t"}, RefreshKeys("https://aai.example.org/token", "oidc-agent", "rt")),  # refresh keys win
    ({**KEYS, "clientSecret": "cs", "scope": "openid eduperson_entitlement"},
     RefreshKeys("https://aai.example.org/token", "oidc-agent", "rt", "cs", "openid eduperson_entitlement")),
    ({**KEYS, "clientSecret": "", "scope": ""}, RefreshKeys("https://aai.example.org/token", "oidc-agent", "rt")),
])
def test_what_a_secrets_keys_say(values, login):
    assert oscar_login(values) == login


@pytest.mark.parametrize(("values", "missing"), [
    ({}, "needs keys `username` and `password`, or `token`, or `refreshToken`, `tokenEndpoint` and `clientId`"),
    ({"username": "user-value"}, "needs keys `username` and `password`"),
    ({"token": ""}, "needs keys"),
    ({"refreshToken": "rt-value"}, "has `refreshToken` and needs `tokenEndpoint` and `clientId` too"),
    ({"refreshToken": "rt-value", "clientId": "client-value", "token": "token-value"},
     "has `refreshToken` and needs `tokenEndpoint` too"),
])
def test_incomplete_secrets_name_the_missing_keys_never_a_value(values, missing):
    with pytest.raises(ValueError) as incomplete:
        oscar_login(values)
    assert missing in str(incomplete.value)
    assert not any(value and value in str(incomplete.value) for value in values.values())


def test_logins_do_not_show_their_secrets_in_repr():
    shown = repr([Basic("u", "pw-1"), Bearer("tok-2"), RefreshKeys("https://e/t", "c", "rt-3", "cs-4")])
    assert not any(secret in shown for secret in ("pw-1", "tok-2", "rt-3", "cs-4"))


@pytest.mark.parametrize(("keys", "form"), [
    (RefreshKeys("https://e/t", "c", "rt"), {"grant_type": "refresh_token", "refresh_token": "rotated",
                                             "client_id": "c"}),
    (RefreshKeys("https://e/t", "c", "rt", "cs", "openid"),
     {"grant_type": "refresh_token", "refresh_token": "rotated", "client_id": "c", "client_secret": "cs",
      "scope": "openid"}),
])
def test_the_refresh_grants_form(keys, form):
    assert refresh_form(keys, "rotated") == form


@pytest.mark.parametrize(("answer", "expires_at", "rotated"), [
    ({"access_token": "a", "expires_in": 3600}, 3700.0, None),
    ({"access_token": "a", "expires_in": 2.5, "refresh_token": "r2"}, 102.5, "r2"),
    ({"access_token": "a", "expires_in": "300"}, 400.0, None),        # a number sent as a string
    ({"access_token": "a"}, None, None),                             # no lifetime: used until OSCAR refuses it
    ({"access_token": "a", "expires_in": 0}, None, None),
    ({"access_token": "a", "expires_in": True}, None, None),
    ({"access_token": "a", "expires_in": "soon", "refresh_token": ""}, None, None),
])
def test_a_granted_token(answer, expires_at, rotated):
    token = granted(answer, now=100.0)
    assert (token.value, token.issued_at, token.expires_at, token.refresh_token) == ("a", 100.0, expires_at, rotated)


@pytest.mark.parametrize("answer", [None, [], {}, {"access_token": ""}, {"access_token": 7}, {"token": "a"}])
def test_an_answer_without_an_access_token_is_refused(answer):
    with pytest.raises(ValueError, match="no access_token"):
        granted(answer, now=0.0)


# (lifetime, seconds since issued, due): a minute ahead at most, and at most a tenth of the lifetime.
@pytest.mark.parametrize(("lifetime", "age", "due"), [
    (3600, 0, False),
    (3600, 3539, False),
    (3600, 3540, True),        # one minute left
    (3600, 3599, True),
    (3600, 4000, True),        # expired
    (300, 269, False),
    (300, 270, True),          # 10% = 30 s left, less than a minute
    (5, 4.4, False),
    (5, 4.5, True),            # a token of 5 s is used for 4.5 s, not refreshed on every call
    (0.001, 0, False),
    (None, 10 ** 9, False),    # no lifetime given: never due (OSCAR's 401 says when)
])
def test_when_a_token_is_due_for_refresh(lifetime, age, due):
    token = AccessToken("a", issued_at=1000.0, expires_at=None if lifetime is None else 1000.0 + lifetime)
    assert refresh_due(token, now=1000.0 + age) is due


@pytest.mark.parametrize(("status", "error", "needs_a_person"), [
    (400, "invalid_grant", True),          # the refresh token expired or was revoked
    (401, "invalid_client", True),
    (400, "invalid_scope", True),
    (400, "unauthorized_client", True),
    (400, "unsupported_grant_type", True),
    (400, "invalid_request", True),
    (404, None, True),                     # not a token endpoint
    (302, None, True),                     # nor is a redirect (never followed)
    (403, None, True),
    (500, None, False),
    (503, None, False),
    (503, "temporarily_unavailable", False),
    (429, None, False),
    (408, None, False),
    (500, "invalid_grant", True),          # the endpoint's own word about the grant is taken
])
def test_which_refusals_need_a_person(status, error, needs_a_person):
    assert grant_refusal_needs_a_person(status, error) is needs_a_person


def test_without_removes_exact_values_of_any_shape():
    assert without("echo: rt-1 and cs", ["rt-1", None, "", "cs"]) == "echo: [redacted] and [redacted]"
