"""A client of the OSCAR Manager REST API (`requests`): service specs, cluster status, asynchronous invocations.

Errors come out as `OscarError` with a message a person can act on; credentials never appear in them. The
credentials of /system/* calls are renewed when OSCAR answers 401 (`SystemAuthorization`).
"""
from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.util.retry import Retry

from oscar_batch.clients.errors import connection_problem
from oscar_batch.clients.http import endpoint_session
from oscar_batch.clients.oidc import GRANTS, RefreshGrant, RefreshGrants, TokenRefreshError
from oscar_batch.core import tokens
from oscar_batch.core.redaction import quote

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 15.0
BODY_KEPT = 512   # characters of an error answer kept in OscarError.body


class OscarError(Exception):
    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body    # the start of OSCAR's answer, to compare with what OSCAR says; the message quotes it


class SystemAuthorization:
    """The `Authorization` header of /system/* calls, from a Login: Basic, a bearer token, or the access tokens of
    a refresh grant. When OSCAR answers 401, `renewed` asks `renew` (the Secret read again: a refresher may have
    rotated it) once for every call that failed with the same credentials, however many threads saw the 401."""

    def __init__(self, login: tokens.Login, renew: Callable[[], tokens.Login] | None, *, grants: RefreshGrants,
                 timeout: float, verify: bool | str) -> None:
        self._renew = renew
        self._grants, self._timeout, self._verify = grants, timeout, verify
        self._lock = threading.Lock()
        self._generation = 0     # renewals so far: a call renews only if none happened since it was sent
        self._static: str | None = None
        self._grant: RefreshGrant | None = None
        self._use(login)

    def current(self) -> tuple[str, int]:
        """(header, generation); a refresh grant's token is obtained or refreshed here when due. Raises
        TokenRefreshError."""
        with self._lock:
            static, grant, generation = self._static, self._grant, self._generation
        if grant is not None:
            return f"Bearer {grant.access_token()}", generation
        assert static is not None
        return static, generation

    def renewed(self, failed: str, generation: int) -> str | None:
        """The header to try again with after OSCAR refused `failed`, sent at `generation`; None when the renewed
        credentials are those refused (the 401 stands). Raises TokenRefreshError, and whatever `renew` raises."""
        with self._lock:
            if generation == self._generation:
                self._generation += 1
                if self._renew is not None:
                    self._use(self._renew())
                if self._grant is not None:
                    self._grant.rejected(failed.removeprefix("Bearer "))
        header, _ = self.current()
        return None if header == failed else header

    def _use(self, login: tokens.Login) -> None:
        if isinstance(login, tokens.RefreshKeys):
            # The same keys give the same grant (and its rotated refresh token); new keys, a new grant.
            self._static = None
            self._grant = self._grants.grant(login, timeout=self._timeout, verify=self._verify)
        elif isinstance(login, tokens.Bearer):
            self._static, self._grant = f"Bearer {login.token}", None
        else:
            basic = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
            self._static, self._grant = f"Basic {basic}", None


class OscarClient:
    def __init__(self, endpoint: str, login: tokens.Login, *, renew: Callable[[], tokens.Login] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True, pool_size: int = DEFAULT_POOLSIZE,
                 grants: RefreshGrants = GRANTS) -> None:
        """`renew`: fresh credentials after OSCAR refused the current ones (it raises OscarError, saying why, when
        there are none); `pool_size`: the threads that may call this client at once (urllib3 discards the
        connections beyond its pool's size, "Connection pool is full", and opens new ones for the next calls)."""
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._session = endpoint_session(self.endpoint, verify)
        self._authorization = SystemAuthorization(login, renew, grants=grants, timeout=timeout, verify=verify)
        # GETs and DELETEs are idempotent: ride out a restarting OSCAR Manager. POST /job is never retried here.
        retry = Retry(total=3, backoff_factor=0.25, status_forcelist=(502, 503, 504),
                      allowed_methods=frozenset({"GET", "DELETE"}))
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, HTTPAdapter(max_retries=retry, pool_maxsize=pool_size))

    def close(self) -> None:
        self._session.close()

    def authorize(self) -> None:
        """Obtain the credentials of /system/* calls now: with refresh keys, the first access token, before
        anything is sent to OSCAR. Raises OscarError (status 401 when a person must act)."""
        self._system_authorization("authorizing")

    def service(self, name: str) -> dict[str, Any]:
        """GET /system/services/{name}: the service definition, including its invocation token."""
        return self._json("GET", f"/system/services/{name}", what=f"OSCAR service {name!r}")

    def cluster_status(self) -> dict[str, Any]:
        """GET /system/status, in whichever of its two formats this OSCAR serves."""
        return self._json("GET", "/system/status", what="OSCAR cluster status")

    def invoke(self, service: str, service_token: str, payload: dict[str, Any], job_name: str | None = None) -> None:
        """POST /job/{service}: one asynchronous invocation. OSCAR answers 201 with an empty body."""
        headers = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}
        if job_name:
            headers["X-Delegated-Job-ID"] = job_name
        response = self._send("POST", f"/job/{service}", data=json.dumps(payload), headers=headers,
                              what=f"invocation of OSCAR service {service!r}")
        if response.status_code != 201:
            raise self._error(response, f"invocation of OSCAR service {service!r}")

    def jobs(self, service: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """GET /system/logs/{service}, every page: (job name, {status, creation_time, ...})."""
        page: str | None = None
        while True:
            params = {"page": page} if page else None
            listing = self._json("GET", f"/system/logs/{service}", params=params, what=f"jobs of {service!r}")
            yield from (listing.get("jobs") or {}).items()
            # `next_page` alone says whether there is more: OSCAR passes Kubernetes' continue token on, and the
            # remaining count Kubernetes gives for unselected lists only (never for OSCAR's, by label).
            page = listing.get("next_page")
            if not page:
                return

    def delete_job(self, service: str, job: str, timeout: float | None = None) -> None:
        """DELETE /system/logs/{service}/{job}: the Job and its pods; one already gone counts as deleted. So does
        the Job of a deleted service: OSCAR deletes a service's Jobs with it, and then answers 403 for them, as
        it does for a caller it refuses; the service's own 404 tells the two apart."""
        response = self._send("DELETE", f"/system/logs/{service}/{job}", what=f"job {job!r}", timeout=timeout)
        if response.status_code in (204, 404):
            return
        if response.status_code == 403 and self._send("GET", f"/system/services/{service}", what=f"service {service!r}",
                                                       timeout=timeout).status_code == 404:
            return
        raise self._error(response, f"deleting job {job!r}")

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        response = self._send(method, path, what=what, **kwargs)
        if response.status_code != 200:
            raise self._error(response, what)
        try:
            return response.json()
        except ValueError:
            raise OscarError(f"{what}: OSCAR at {self.endpoint} answered with something that is not JSON") from None

    def _send(self, method: str, path: str, *, what: str, headers: dict[str, str] | None = None,
              timeout: float | None = None, **kwargs: Any) -> requests.Response:
        if headers is not None:   # /job is authorised by the service token alone
            return self._request(method, path, what, headers, timeout, **kwargs)
        authorization, generation = self._system_authorization(what)
        response = self._request(method, path, what, {"Authorization": authorization}, timeout, **kwargs)
        if response.status_code != 401:
            return response
        try:
            renewed = self._authorization.renewed(authorization, generation)
        except (TokenRefreshError, OscarError) as error:
            raise OscarError(f"{what}: OSCAR rejected the credentials, and {error}", 401) from None
        if renewed is None:
            return response
        log.info("OSCAR at %s rejected the credentials; trying again with renewed ones", self.endpoint)
        return self._request(method, path, what, {"Authorization": renewed}, timeout, **kwargs)

    def _system_authorization(self, what: str) -> tuple[str, int]:
        try:
            return self._authorization.current()
        except TokenRefreshError as error:
            raise OscarError(f"{what}: {error}", 401 if error.needs_a_person else None) from None

    def _request(self, method: str, path: str, what: str, headers: dict[str, str], timeout: float | None,
                 **kwargs: Any) -> requests.Response:
        try:
            # No redirect is followed: the endpoint is the allow-listed one, not wherever it points to.
            return self._session.request(method, self.endpoint + path, headers=headers,
                                         timeout=timeout or self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as error:
            raise OscarError(f"{what}: cannot reach OSCAR at {self.endpoint} ({connection_problem(error)})") from None

    def _error(self, response: requests.Response, what: str) -> OscarError:
        status = response.status_code
        if status in (401, 403):
            reason = "OSCAR rejected the credentials"
        elif status == 404:
            reason = "not found"
        else:
            reason = f"OSCAR answered {status}: {quote(response.text)}"
        return OscarError(f"{what}: {reason}", status, body=response.text[:BODY_KEPT])
