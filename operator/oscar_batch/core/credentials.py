"""Which Secrets a batch may take its credentials from, and their values. Pure.

Whoever may create an OscarBatchJob names its Secrets, and may be unable to read Secrets themselves: the
operator, which can, must not become their way to every Secret of the namespace. So a Secret is used only when
its owner opted in with the label `batch.oscarbatch.dev/credentials: "true"`, and never when it holds a
ServiceAccount's token, whatever its labels say.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

OPT_IN_LABEL = "batch.oscarbatch.dev/credentials"
OPT_IN_VALUE = "true"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"


def refusal(secret: Mapping[str, Any]) -> str | None:
    """Why the operator may not use this Secret (for the message), or None when it may."""
    metadata = secret.get("metadata") or {}
    where = f"Secret {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
    if secret.get("type") == SERVICE_ACCOUNT_TOKEN:
        return f"{where} holds a ServiceAccount token ({SERVICE_ACCOUNT_TOKEN}); the operator never uses those"
    if (metadata.get("labels") or {}).get(OPT_IN_LABEL) != OPT_IN_VALUE:
        return (f"{where} is not labelled {OPT_IN_LABEL}={OPT_IN_VALUE}; label it if it holds this batch's "
                f"credentials (kubectl label secret {metadata.get('name', '?')} {OPT_IN_LABEL}={OPT_IN_VALUE})")
    return None


def values(secret: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """The named keys of a Secret the operator may use, decoded; absent or undecodable keys are left out."""
    data = secret.get("data") or {}
    found = {}
    for key in keys:
        try:
            found[key] = base64.b64decode(data[key], validate=True).decode()
        except (KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            continue
    return found
