"""A client of the OSCAR Manager REST API (`requests`): service specs, cluster status, asynchronous invocations.

Errors come out as `OscarError` with a message a person can act on; credentials never appear in them.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.util.retry import Retry

from oscar_batch.clients.errors import connection_problem
from oscar_batch.core.redaction import quote

DEFAULT_TIMEOUT = 15.0
BODY_KEPT = 512   # characters of an error answer kept in OscarError.body


class OscarError(Exception):
    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body    # the start of OSCAR's answer, to compare with what OSCAR says; the message quotes it


class OscarClient:
    def __init__(self, endpoint: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = DEFAULT_TIMEOUT, verify: bool | str = True,
                 pool_size: int = DEFAULT_POOLSIZE) -> None:
        """`pool_size`: the threads that may call this client at once (urllib3 discards the connections beyond
        its pool's size, "Connection pool is full", and opens new ones for the next calls)."""
        if not (token or (username and password)):
            raise OscarError("OSCAR credentials need `username` and `password`, or a `token`")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # The environment is read once, for this endpoint: requests would read it on every call (proxies, CA
        # bundle, ~/.netrc), 8% of the operator's CPU at 200 invocations a second, and a ~/.netrc entry
        # for the host would replace the credentials below.
        self._session.trust_env = False
        self._session.proxies = requests.utils.get_environ_proxies(self.endpoint)
        self._session.verify = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                                ) if verify is True else verify
        if token:
            self._system_authorization = f"Bearer {token}"
        else:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._system_authorization = f"Basic {basic}"
        # GETs and DELETEs are idempotent: ride out a restarting OSCAR Manager. POST /job is never retried here.
        retry = Retry(total=3, backoff_factor=0.25, status_forcelist=(502, 503, 504),
                      allowed_methods=frozenset({"GET", "DELETE"}))
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, HTTPAdapter(max_retries=retry, pool_maxsize=pool_size))

    def close(self) -> None:
        self._session.close()

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
        # /job is authorised by the service token alone; everything else by the cluster credentials.
        headers = headers or {"Authorization": self._system_authorization}
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
