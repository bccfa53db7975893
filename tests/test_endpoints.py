"""The operator's allow-list of endpoints: https unless plain http is allowed, hosts by pattern."""
import pytest

from oscar_batch.core.endpoints import EndpointPolicy, origin, parse_patterns

STRICT = EndpointPolicy(oscar_hosts=("oscar.example.org", "*.oscar.example.org", "10.0.0.7:8080"),
                        s3_hosts=("minio.example.org:9000", "[::1]:*"))
LOOPBACK = EndpointPolicy(oscar_hosts=("127.0.0.1:*",), s3_hosts=("127.0.0.1:*", "localhost:*"), allow_http=True)


@pytest.mark.parametrize(("policy", "endpoint", "allowed"), [
    (STRICT, "https://oscar.example.org", True),
    (STRICT, "https://OSCAR.example.org/", True),                  # hosts are case-insensitive
    (STRICT, "https://oscar.example.org:443/api", True),           # the default port, written out
    (STRICT, "https://oscar.example.org:8443", False),             # no port in the pattern: the default only
    (STRICT, "http://oscar.example.org", False),                   # no --allow-http
    (STRICT, "https://eu.oscar.example.org", True),
    (STRICT, "https://a.b.oscar.example.org", True),
    (STRICT, "https://evil-oscar.example.org", False),
    (STRICT, "https://oscar.example.org.evil.example", False),
    (STRICT, "https://10.0.0.7:8080", True),
    (STRICT, "https://10.0.0.7", False),
    (STRICT, "https://127.0.0.1:8080", False),
    (STRICT, "https://oscar.example.org:99999", False),            # not a port
    (EndpointPolicy((), ()), "https://oscar.example.org", False),  # nothing allowed unless named
    (LOOPBACK, "http://127.0.0.1:34567", True),
    (LOOPBACK, "https://127.0.0.1:34567", True),
    (LOOPBACK, "http://127.0.0.2:34567", False),
    (LOOPBACK, "http://localhost:80", False),                      # only S3 may be named as localhost
])
def test_oscar_endpoints(policy, endpoint, allowed):
    assert (policy.oscar_refusal(endpoint) is None) is allowed


@pytest.mark.parametrize(("endpoint", "allowed"), [
    ("https://minio.example.org:9000", True),
    ("https://minio.example.org", False),
    ("https://[::1]:9000", True),
    ("https://[::2]:9000", False),
    ("https://oscar.example.org", False),                          # an OSCAR host is not an S3 host
])
def test_s3_endpoints(endpoint, allowed):
    assert (STRICT.s3_refusal(endpoint) is None) is allowed


def test_refusals_say_why_and_what_is_allowed():
    assert STRICT.oscar_refusal("http://oscar.example.org") == (
        "spec.oscar.endpoint 'http://oscar.example.org' is not https, and this operator allows plain http to no "
        "endpoint (it runs without --allow-http)")
    assert STRICT.s3_refusal("https://evil.example") == (
        "spec.storage.endpoint 'https://evil.example' names a host this operator may not send credentials to "
        "(its --allow-s3 hosts: minio.example.org:9000, [::1]:*)")
    assert EndpointPolicy((), ()).oscar_refusal("https://o.example").endswith("(its --allow-oscar hosts: none)")


@pytest.mark.parametrize(("policy", "endpoint", "refusal"), [
    (STRICT, "https://eu.oscar.example.org/realms/egi/protocol/openid-connect/token", None),
    (STRICT, "https://aai.example.org/oidc/token",
     "the tokenEndpoint of Secret ns/oscar 'https://aai.example.org/oidc/token' names a host this operator may not "
     "send credentials to (its --allow-oscar hosts: oscar.example.org, *.oscar.example.org, 10.0.0.7:8080)"),
    (STRICT, "http://oscar.example.org/token",
     "the tokenEndpoint of Secret ns/oscar 'http://oscar.example.org/token' is not https, and this operator allows "
     "plain http to no endpoint (it runs without --allow-http)"),
    (STRICT, "https://minio.example.org:9000/token", "names a host"),   # an S3 host is not an OSCAR host
    (LOOPBACK, "http://127.0.0.1:4444/oidc/token", None),
    (LOOPBACK, "https://oscar.example.org/token?client_secret=x", "may not have user info, a query or a fragment"),
    (LOOPBACK, "https://user:pw@127.0.0.1:4444/token", "may not have user info, a query or a fragment"),
    (LOOPBACK, "https://127.0.0.1:4444/token#x", "may not have user info, a query or a fragment"),
])
def test_token_endpoints_are_oscar_hosts(policy, endpoint, refusal):
    """A Secret's OIDC token endpoint receives its refresh token: it must be among the --allow-oscar hosts."""
    found = policy.token_endpoint_refusal(endpoint, "ns/oscar")
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
        assert "client_secret=x" not in found and "pw" not in found


@pytest.mark.parametrize(("text", "patterns"), [
    ("", ()),
    ("oscar.example.org", ("oscar.example.org",)),
    (" A.example.org , *.b.example.org:443,,127.0.0.1:* ", ("a.example.org", "*.b.example.org:443", "127.0.0.1:*")),
    ("[::1]:9000", ("[::1]:9000",)),
])
def test_parse_patterns(text, patterns):
    assert parse_patterns(text) == patterns


@pytest.mark.parametrize("text", ["https://oscar.example.org", "oscar.example.org/api", "host:port", "a b",
                                  "user@host", "host:123456"])
def test_parse_patterns_refuses_what_is_not_a_host(text):
    with pytest.raises(ValueError, match="not a host pattern"):
        parse_patterns(text)


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("https://oscar.example.org", "https://oscar.example.org:443"),
    ("https://OSCAR.example.org:443/api/", "https://oscar.example.org:443"),
    ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
    ("http://[::1]:9000", "http://[::1]:9000"),
])
def test_origin(endpoint, expected):
    assert origin(endpoint) == expected
