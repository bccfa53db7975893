"""Peer texts quoted into status and Events: one line, capped, nothing credential-shaped left."""
import pathlib

import pytest
import yaml

from oscar_batch.core.redaction import MESSAGE_LIMIT, PEER_TEXT_LIMIT, cap, quote, redact

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0."
       "c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2g")
OSCAR_TOKEN = "3b1f7c0e9a2d4f6b8c1e3a5d7f9b2c4e6a8d0f1b3c5e7a9d2f4b6c8e0a1c3e5f7a"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(("text", "expected"), [
    # what peers really say stays as it is
    ('jobs.batch "fish-0123456789ab-l1-2-a1" already exists', 'jobs.batch "fish-0123456789ab-l1-2-a1" already exists'),
    ("The specified bucket does not exist.", "The specified bucket does not exist."),
    ('secrets "oscar-credentials" is forbidden: User "system:serviceaccount:oscar-batch-system:oscar-batch-operator" '
     'cannot get resource "secrets" in API group "" in the namespace "default"',
     'secrets "oscar-credentials" is forbidden: User "system:serviceaccount:oscar-batch-system:oscar-batch-operator" '
     'cannot get resource "secrets" in API group "" in the namespace "default"'),
    ("token contains an invalid number of segments", "token contains an invalid number of segments"),
    ("input/2024/06/frame-000001.jpg", "input/2024/06/frame-000001.jpg"),
    ("uid 3f2a9c1b-7d4e-4b8a-9f01-23456789abcd", "uid 3f2a9c1b-7d4e-4b8a-9f01-23456789abcd"),
    # authorization schemes
    ("got Authorization: Bearer abc.def-ghi", "got Authorization: [redacted] [redacted]"),
    ("bearer s3cr3t, and more", "bearer [redacted], and more"),
    ("header Basic b3NjYXI6cGFzc3dvcmQ=", "header Basic [redacted]"),
    ("AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request",
     "AWS4-HMAC-SHA256 [redacted]"),
    # tokens by their shape
    (f"invalid token {JWT} given", "invalid token [redacted] given"),
    (f"the service token is {OSCAR_TOKEN}", "the service token is [redacted]"),
    (f"key AKIAIOSFODNN7EXAMPLE and {AWS_SECRET}.", "key [redacted] and [redacted]."),
    # key=value and key: value
    ("login failed: password=hunter2&user=oscar", "login failed: password=[redacted]&user=oscar"),
    ('{"secretKey": "abc", "accessKey":"AK1"}', '{"secretKey": [redacted], "accessKey":[redacted]}'),
    ("?X-Amz-Signature=0a1b2c&X-Amz-Credential=x%2Fy", "?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]"),
    ("api_key: zzz; session_token='q w'", "api_key: [redacted]; session_token=[redacted]"),
    # URLs with userinfo
    ("redirected to https://oscar:pa55@evil.example/x", "redirected to https://[redacted]@evil.example/x"),
    ("s3://AK:SK@bucket/key", "s3://[redacted]@bucket/key"),
    # private keys
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- rest", "[redacted] rest"),
])
def test_redact(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (None, ""),
    (b"bytes \xff too", "bytes \ufffd too"),
    ("two\nlines\r\n\tand a tab", "two lines and a tab"),
    ("\x1b[31mred\x1b[0m and \x07bell", "red and bell"),
    ("line\u2028separator", "line separator"),
    ("  padded  ", "padded"),
    (f"Bearer {OSCAR_TOKEN}\n", "Bearer [redacted]"),
])
def test_quote_makes_one_clean_line(text, expected):
    assert quote(text) == expected


def test_quote_caps_after_redacting_the_whole_token():
    # A token cut at the limit would no longer look like one: redaction comes first.
    text = "x" * (PEER_TEXT_LIMIT - 10) + f" Bearer {OSCAR_TOKEN}"
    quoted = quote(text)
    assert len(quoted) <= PEER_TEXT_LIMIT and quoted.endswith("…")
    assert OSCAR_TOKEN[:5] not in quoted
    assert quote("y" * 100_000) == "y" * (PEER_TEXT_LIMIT - 1) + "…"
    assert quote("short", limit=3) == "sh…"


@pytest.mark.parametrize(("message", "limit", "expected"), [
    ("short", 10, "short"),
    ("exactly10!", 10, "exactly10!"),
    ("eleven char", 10, "eleven ch…"),
    ("z" * (MESSAGE_LIMIT + 1), MESSAGE_LIMIT, "z" * (MESSAGE_LIMIT - 1) + "…"),
])
def test_cap(message, limit, expected):
    assert cap(message, limit) == expected


def test_the_crd_bounds_messages_as_the_operator_caps_them():
    crd = yaml.safe_load((pathlib.Path(__file__).parent.parent / "crds" / "batchjob.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["message"]["maxLength"] == MESSAGE_LIMIT
    assert status["conditions"]["items"]["properties"]["message"]["maxLength"] == MESSAGE_LIMIT
