"""`requests` sessions for one allow-listed endpoint: the environment read once, nothing of it per call.

requests reads the environment on every call (proxies, CA bundle, ~/.netrc): 8% of the operator's CPU at 200
OSCAR invocations a second, and a ~/.netrc entry for the host would replace the credentials the operator sends.
"""
from __future__ import annotations

import os

import requests


def endpoint_session(endpoint: str, verify: bool | str = True) -> requests.Session:
    """A session whose proxies and CA bundle are the environment's for `endpoint`, read now, with `trust_env`
    off. Its callers never follow redirects: the endpoint is the allow-listed one, not wherever it points to."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(endpoint)
    session.verify = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                      ) if verify is True else verify
    return session
