"""OSCAR credentials from a Secret's keys, and OIDC access tokens: when one is due for refresh, what a token
endpoint's answer says. Pure.

A shared OSCAR (AI4EOSC, EGI Check-in) takes OIDC bearer tokens that expire within the hour, while a batch
runs for days. A Secret gives either a `token` that something else keeps fresh (oidc-agent, a CronJob), or the
keys of the refresh-token grant (RFC 6749 §6), with which the operator obtains access tokens itself.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from oscar_batch.core.redaction import REDACTED

# The keys of an OSCAR Secret, in the order they are documented.
OSCAR_SECRET_KEYS = ("username", "password", "token", "refreshToken", "tokenEndpoint", "clientId", "clientSecret",
                     "scope")
REFRESH_AHEAD = 60.0       # seconds before expiry an access token is refreshed, at most ...
REFRESH_AHEAD_SHARE = 0.1  # ... and at most this share of its lifetime (a token of 5 s is used for 4.5)
# RFC 6749 §5.2: the grant's own errors, all of them the client's or the refresh token's: a person must act.
GRANT_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                          "unsupported_grant_type", "invalid_scope"})


@dataclasses.dataclass(frozen=True)
class Basic:
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Bearer:
    token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class RefreshKeys:
    """The refresh-token grant's inputs, as the Secret gives them."""
    token_endpoint: str
    client_id: str
    refresh_token: str = dataclasses.field(repr=False)
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    scope: str | None = None


Login = Basic | Bearer | RefreshKeys


def oscar_login(values: Mapping[str, str]) -> Login:
    """What a Secret's keys say to do: the refresh grant when it has `refreshToken` (its `token`, if any, is left
    unused), else the bearer `token`, else `username` and `password`. Raises ValueError naming the keys that are
    missing."""
    if values.get("refreshToken"):
        missing = [key for key in ("tokenEndpoint", "clientId") if not values.get(key)]
        if missing:
            raise ValueError(f"has `refreshToken` and needs {_keys(missing)} too (and optionally `clientSecret`, "
                             "`scope`)")
        return RefreshKeys(token_endpoint=values["tokenEndpoint"], client_id=values["clientId"],
                           refresh_token=values["refreshToken"], client_secret=values.get("clientSecret") or None,
                           scope=values.get("scope") or None)
    if values.get("token"):
        return Bearer(values["token"])
    if values.get("username") and values.get("password"):
        return Basic(values["username"], values["password"])
    raise ValueError("needs keys `username` and `password`, or `token`, or `refreshToken`, `tokenEndpoint` and "
                     "`clientId`")


def refresh_form(keys: RefreshKeys, refresh_token: str) -> dict[str, str]:
    """The form of one refresh-token grant (RFC 6749 §6), with the refresh token to spend: the Secret's, or
    the one the token endpoint last rotated to. The client authenticates in the body (§2.3.1)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": keys.client_id}
    if keys.client_secret:
        form["client_secret"] = keys.client_secret
    if keys.scope:
        form["scope"] = keys.scope
    return form


@dataclasses.dataclass(frozen=True)
class AccessToken:
    value: str = dataclasses.field(repr=False)
    issued_at: float                     # on the caller's monotonic clock
    expires_at: float | None             # None: the endpoint gave no `expires_in`; used until OSCAR refuses it
    refresh_token: str | None = dataclasses.field(default=None, repr=False)  # a rotated one, if the answer has it


def granted(answer: Any, now: float) -> AccessToken:
    """The access token of a token endpoint's successful answer (RFC 6749 §5.1). Raises ValueError when it has
    none (the message never quotes the answer: it may hold tokens)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
        raise ValueError("its answer has no access_token")
    lifetime = _seconds(answer.get("expires_in"))
    rotated = answer.get("refresh_token")
    return AccessToken(value=answer["access_token"], issued_at=now,
                       expires_at=now + lifetime if lifetime else None,
                       refresh_token=rotated if isinstance(rotated, str) and rotated else None)


def refresh_due(token: AccessToken, now: float) -> bool:
    """Whether to refresh before using `token`: when less than REFRESH_AHEAD seconds or REFRESH_AHEAD_SHARE of its
    lifetime are left, whichever is less (a short-lived token is not refreshed on every call)."""
    if token.expires_at is None:
        return False
    ahead = min(REFRESH_AHEAD, REFRESH_AHEAD_SHARE * (token.expires_at - token.issued_at))
    return now >= token.expires_at - ahead


def grant_refusal_needs_a_person(status: int, error: str | None) -> bool:
    """Whether a token endpoint's refusal is the user's to fix (a refresh token revoked or expired, a wrong client
    id or secret, a URL that is no token endpoint) rather than the endpoint's passing trouble (5xx, 408, 429),
    which clears by itself."""
    if error in GRANT_ERRORS:
        return True
    return status < 500 and status not in (408, 429)


def without(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each of `secrets` replaced by `[redacted]`: a peer may echo a token of any shape, and only the
    exact values are sure to go."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _seconds(value: Any) -> float | None:
    """`expires_in` as seconds, when it is a positive number (some endpoints send it as a string)."""
    if isinstance(value, str) and value.replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _keys(names: list[str]) -> str:
    return " and ".join(f"`{name}`" for name in names)
