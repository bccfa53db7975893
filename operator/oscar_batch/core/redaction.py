"""What a peer said, made fit to quote in status and Events: one line, capped, and stripped of anything shaped
like a credential. Pure.

OSCAR, S3 and the Kubernetes API answer errors with texts of their own choosing; a batch's endpoints are chosen
by whoever creates the batch, so such a text may be anything, an echoed `Authorization` header included. Every
peer text the operator quotes goes through `quote`; every message it writes goes through `cap`, so that it fits
the CRD's `maxLength`.
"""
from __future__ import annotations

import re

PEER_TEXT_LIMIT = 300     # characters of a peer's text quoted into a message
MESSAGE_LIMIT = 4096      # characters of status.message and of a condition's message (the CRD's maxLength)
REDACTED = "[redacted]"
ELLIPSIS = "…"

# Most specific first: a whole "Authorization: Bearer x" goes as one, before the token rule sees "x".
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
     REDACTED),
    # userinfo in a URL: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), rf"\1{REDACTED}@"),
    # HTTP authorization schemes
    (re.compile(r"(?i)\b(bearer|basic|digest|aws4-hmac-sha256)(\s+)[^\s,;\"']+"), rf"\1\2{REDACTED}"),
    # key=value and key: value with a credential-like key (query strings, JSON, log lines, signed URLs)
    (re.compile(r"""(?ix)
        (["']?\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key
                        |credential|signature|authorization|session[_-]?key|private[_-]?key)[\w.-]*["']?)
        (\s*[=:]\s*)
        ("[^"]*"|'[^']*'|[^\s&,;"'}]+)"""), rf"\1\2{REDACTED}"),
    # JSON Web Tokens: three base64url segments, the first a JSON object ("eyJ")
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), REDACTED),
    # Long random-looking tokens (AWS secret keys, OSCAR's 64-hex service tokens): 32 or more characters of a
    # token alphabet with letters and digits both. Names of Jobs and objects have '-' or '.' well before that.
    (re.compile(r"(?<![A-Za-z0-9+/=_])(?=[A-Za-z0-9+/_]*[0-9])(?=[A-Za-z0-9+/_]*[A-Za-z])[A-Za-z0-9+/_]{32,}=*"
                r"(?![A-Za-z0-9+/=_])"), REDACTED),
)
# Terminal escapes first: their ESC alone would leave "[31m" behind.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def redact(text: str) -> str:
    """`text` with every credential-shaped part replaced by `[redacted]`."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def quote(text: str | bytes | None, limit: int = PEER_TEXT_LIMIT) -> str:
    """A peer's text for a message: control characters and line breaks as single spaces, credentials
    redacted, at most `limit` characters (cut with '…')."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # Redaction sees the text uncut (a token cut in half no longer looks like one), but not more than needed.
    one_line = " ".join(_CONTROL.sub(" ", text[:8 * limit]).split())
    return cap(redact(one_line), limit)


def cap(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """`message` cut to `limit` characters, '…' marking the cut."""
    return message if len(message) <= limit else message[:limit - len(ELLIPSIS)] + ELLIPSIS
