"""Which OSCAR and S3 endpoints a batch may name, and which OIDC token endpoints its OSCAR Secret may: the
operator's allow-list of hosts, and https unless plain http is allowed. Pure.

Whoever creates a batch chooses its endpoints, and the operator sends the credentials of the batch's Secrets
there; the allow-list is what keeps them on the hosts the operator's administrator chose. A pattern is `HOST`
or `HOST:PORT` with `*` wildcards (as in a Content-Security-Policy source): `oscar.example.org`,
`*.example.org` (subdomains, not the apex), `minio.example.org:9000`, `127.0.0.1:*`; a pattern without a port
allows only the scheme's default port. Hosts are compared as written in the URL, lowercase, never resolved.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
import urllib.parse

DEFAULT_PORTS = {"https": 443, "http": 80}
_PATTERN = re.compile(r"^(\[[0-9a-fA-F:.*]+\]|[A-Za-z0-9*][A-Za-z0-9.*-]*)(:(\d{1,5}|\*))?$")


@dataclasses.dataclass(frozen=True)
class EndpointPolicy:
    oscar_hosts: tuple[str, ...]     # patterns; none: no OSCAR endpoint is allowed
    s3_hosts: tuple[str, ...]
    allow_http: bool = False

    def oscar_refusal(self, endpoint: str) -> str | None:
        """Why a batch may not name this OSCAR endpoint (the message), or None when it may."""
        return _refusal(endpoint, self.oscar_hosts, self.allow_http, "spec.oscar.endpoint", "--allow-oscar")

    def s3_refusal(self, endpoint: str) -> str | None:
        return _refusal(endpoint, self.s3_hosts, self.allow_http, "spec.storage.endpoint", "--allow-s3")

    def token_endpoint_refusal(self, endpoint: str, secret: str) -> str | None:
        """Why the operator may not send the refresh token of Secret `secret` (namespace/name) to this OIDC token
        endpoint. A token endpoint receives OSCAR credentials, so it must be one of the --allow-oscar hosts."""
        url = urllib.parse.urlsplit(endpoint)
        subject = f"the tokenEndpoint of Secret {secret}"
        if "@" in url.netloc or url.query or url.fragment:
            return f"{subject} may not have user info, a query or a fragment"
        return _refusal(endpoint, self.oscar_hosts, self.allow_http, subject, "--allow-oscar")


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma-separated host patterns, as a flag gives them; an empty text is no pattern at all."""
    patterns = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for pattern in patterns:
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(f"{pattern!r} is not a host pattern: HOST or HOST:PORT, '*' as wildcard "
                             "(e.g. oscar.example.org, *.example.org, 127.0.0.1:*), no scheme or path")
    return patterns


def origin(endpoint: str) -> str:
    """`scheme://host:port` of an endpoint, the port always written: what one peer is, for limits per peer."""
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme}://{host}:{_port(url) or ''}"


def _refusal(endpoint: str, patterns: tuple[str, ...], allow_http: bool, subject: str, flag: str) -> str | None:
    url = urllib.parse.urlsplit(endpoint)
    named = f"{subject} {endpoint!r}"
    if url.scheme != "https" and not (url.scheme == "http" and allow_http):
        return (f"{named} is not https, and this operator allows plain http to no endpoint "
                "(it runs without --allow-http)")
    host, port = (url.hostname or "").lower(), _port(url)
    if port is None or not any(_matches(host, port, url.scheme, pattern) for pattern in patterns):
        allowed = ", ".join(patterns) or "none"
        return f"{named} names a host this operator may not send credentials to (its {flag} hosts: {allowed})"
    return None


def _port(url: urllib.parse.SplitResult) -> int | None:
    try:
        return url.port or DEFAULT_PORTS.get(url.scheme)
    except ValueError:   # not a number, or out of range
        return None


def _matches(host: str, port: int, scheme: str, pattern: str) -> bool:
    if pattern.startswith("["):
        pattern_host, _, rest = pattern[1:].partition("]")
        pattern_port = rest[1:]
    else:
        pattern_host, _, pattern_port = pattern.partition(":")
    if not fnmatch.fnmatchcase(host, pattern_host):
        return False
    if pattern_port == "*":
        return True
    return port == (int(pattern_port) if pattern_port else DEFAULT_PORTS[scheme])
