"""The OIDC refresh-token grant (RFC 6749 §6) with `requests`: access tokens for OSCAR from a Secret's refresh keys,
cached and refreshed ahead of their expiry (`core.tokens`) or when OSCAR refuses one.

A token endpoint may rotate the refresh token with every grant and revoke the one spent. The rotated token is kept
here, in memory (the operator may not write Secrets), and the grant is shared by every client made from the same
keys (`GRANTS`), so that two batches on one Secret, or a batch's client made again after a restart of its loop, do
not spend a refresh token the other already spent. A Secret whose `refreshToken` changes is new keys: a new grant.
Errors come out as `TokenRefreshError`, with the endpoint's error code but never a token.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import requests

from oscar_batch.clients.errors import connection_problem
from oscar_batch.clients.http import endpoint_session
from oscar_batch.core import tokens
from oscar_batch.core.redaction import quote

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 15.0
GRANTS_KEPT = 256     # sets of refresh keys remembered in one process (one per Secret's refreshToken in use)


class TokenRefreshError(Exception):
    def __init__(self, message: str, *, needs_a_person: bool) -> None:
        super().__init__(message)
        self.needs_a_person = needs_a_person   # else the endpoint's passing trouble: it clears by itself


class RefreshGrant:
    """Access tokens from one set of refresh keys; thread-safe: one grant at a time, and callers that waited for
    it take its token."""

    def __init__(self, keys: tokens.RefreshKeys, *, timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.timeout = timeout
        self.clock = clock
        self.grants = 0                          # made, for tests and logs
        self._refresh_token = keys.refresh_token  # the Secret's, until the endpoint rotates it
        self._token: tokens.AccessToken | None = None
        self._lock = threading.Lock()
        self._session = endpoint_session(keys.token_endpoint, verify)
        self._where = quote(keys.token_endpoint)

    def access_token(self) -> str:
        """The cached access token, or a new one when there is none, it is due for refresh or OSCAR refused it."""
        with self._lock:
            now = self.clock()
            if self._token is None or tokens.refresh_due(self._token, now):
                self._token = self._grant(now)
            return self._token.value

    def rejected(self, value: str) -> None:
        """OSCAR answered 401 to `value`: the next `access_token()` grants anew, unless a newer token is cached."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _grant(self, now: float) -> tokens.AccessToken:
        form = tokens.refresh_form(self.keys, self._refresh_token)
        try:
            # No retry: with rotation, a grant whose answer was lost has spent its refresh token already.
            response = self._session.post(self.keys.token_endpoint, data=form, timeout=self.timeout,
                                          headers={"Accept": "application/json"}, allow_redirects=False)
        except requests.RequestException as error:
            raise TokenRefreshError(f"cannot reach the OIDC token endpoint {self._where} "
                                    f"({connection_problem(error)})", needs_a_person=False) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200:
            raise self._refusal(response.status_code, answer)
        try:
            token = tokens.granted(answer, now)
        except ValueError as error:
            raise TokenRefreshError(f"the OIDC token endpoint {self._where} granted no token: {error}",
                                    needs_a_person=True) from None
        self.grants += 1
        if token.refresh_token:
            self._refresh_token = token.refresh_token
        log.info("OIDC access token obtained from %s (valid for %s)", self._where,
                 "an unknown time" if token.expires_at is None else f"{token.expires_at - now:.0f} s")
        return token

    def _refusal(self, status: int, answer: object) -> TokenRefreshError:
        error = answer.get("error") if isinstance(answer, dict) else None
        error = error if isinstance(error, str) else None
        described = answer.get("error_description") if isinstance(answer, dict) else None
        said = ": ".join(self._clean(part) for part in (error, described) if isinstance(part, str) and part)
        needs_a_person = tokens.grant_refusal_needs_a_person(status, error)
        advice = ("; put a new refresh token (or client credentials) in the Secret" if needs_a_person
                  else "; trying again later")
        return TokenRefreshError(f"the OIDC token endpoint {self._where} refused the refresh-token grant "
                                 f"({status}{': ' + said if said else ''}){advice}", needs_a_person=needs_a_person)

    def _clean(self, text: str) -> str:
        secrets = (self.keys.refresh_token, self._refresh_token, self.keys.client_secret,
                   self._token.value if self._token else None)
        return quote(tokens.without(text, secrets), limit=200)


class RefreshGrants:
    """The process's grants, one per set of refresh keys, the most recently used kept."""

    def __init__(self, limit: int = GRANTS_KEPT, clock: Callable[[], float] = time.monotonic) -> None:
        self._grants: collections.OrderedDict[tokens.RefreshKeys, RefreshGrant] = collections.OrderedDict()
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()

    def grant(self, keys: tokens.RefreshKeys, *, timeout: float = DEFAULT_TIMEOUT,
              verify: bool | str = True) -> RefreshGrant:
        with self._lock:
            grant = self._grants.get(keys)
            if grant is None:
                grant = self._grants[keys] = RefreshGrant(keys, timeout=timeout, verify=verify, clock=self._clock)
            self._grants.move_to_end(keys)
            while len(self._grants) > self._limit:
                self._grants.popitem(last=False)
            return grant


GRANTS = RefreshGrants()
