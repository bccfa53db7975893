"""OIDC tokens that expire, over real HTTP: the operator's OSCAR client and Resolver against the simulator's
/system/* and its token endpoint (the refresh-token grant), with Secrets in the sandbox's Kubernetes API.

A shared OSCAR's users hold bearer tokens that expire within the hour; a batch runs for days. Either something
else rotates the Secret's `token` (read again on a 401), or the Secret holds refresh keys and the operator
obtains access tokens itself, ahead of their expiry and after a 401. No token ever shows in a message or a log.
"""
from __future__ import annotations

import argparse
import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykube
import pytest

from oscar_batch.clients import cluster
from oscar_batch.clients.oidc import RefreshGrants
from oscar_batch.clients.oscar import OscarClient, OscarError
from oscar_batch.controller.resolver import Resolver, Waiting
from oscar_batch.core.credentials import OPT_IN_LABEL
from oscar_batch.core.endpoints import EndpointPolicy
from oscar_batch.core.spec import BatchSpec, parse_spec
from oscar_batch.core.tokens import Bearer, Login, RefreshKeys
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.cli import add_sandbox_options, config_from_args
from oscar_batch_sandbox.config import SandboxConfig
from oscar_batch_sandbox.oscar import OscarSimulator

SERVICE = "fish-detector"
LOOPBACK = EndpointPolicy(oscar_hosts=("127.0.0.1:*",), s3_hosts=("127.0.0.1:*",), allow_http=True)
THREADS = 16


@pytest.fixture(scope="module")
def idp() -> Iterator[SandboxThread]:
    """A sandbox whose OSCAR takes OIDC tokens of 10 minutes (tests expire them at will)."""
    with SandboxThread(SandboxConfig(items=0, bucket="oidc-bucket", token_lifetime=600)) as running:
        yield running


@pytest.fixture(scope="module")
def kube(idp: SandboxThread, tmp_path_factory: pytest.TempPathFactory) -> cluster.Kube:
    path = tmp_path_factory.mktemp("oidc") / "kubeconfig"
    idp.sandbox.write_kubeconfig(path)
    return cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(path))))


def simulator(sandbox: SandboxThread) -> OscarSimulator:
    return sandbox.sandbox.oscar


def refresh_keys(sandbox: SandboxThread, **changes: str) -> RefreshKeys:
    oidc = {**sandbox.info["oidc"], **changes}
    return RefreshKeys(token_endpoint=oidc["tokenEndpoint"], client_id=oidc["clientId"],
                       refresh_token=oidc["refreshToken"])


def put_secret(sandbox: SandboxThread, name: str, values: dict[str, str]) -> None:
    """Create or replace an opted-in Secret, as `kubectl apply` or a refresher's CronJob would."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}

    async def put() -> None:
        if sandbox.kube.get("v1/secrets", "default", name) is None:
            await sandbox.kube.create("v1/secrets", {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                                     "metadata": {"name": name, "namespace": "default",
                                                                  "labels": {OPT_IN_LABEL: "true"}},
                                                     "data": data})
        else:
            await sandbox.kube.patch("v1/secrets", "default", name, {"data": data})
    sandbox.call(put)


def spec(sandbox: SandboxThread, secret: str) -> BatchSpec:
    return parse_spec({"service": SERVICE,
                       "oscar": {"endpoint": sandbox.info["oscar"]["endpoint"], "credentialsSecret": secret},
                       "storage": {"endpoint": sandbox.info["s3"]["endpoint"], "credentialsSecret": "s3",
                                   "bucket": "oidc-bucket"}})


def resolver(kube: cluster.Kube, policy: EndpointPolicy = LOOPBACK) -> Resolver:
    return Resolver(kube, "default", policy)


def waiting_of(call: Any) -> Waiting:
    with pytest.raises(Waiting) as waiting:
        call()
    return waiting.value


def assert_nowhere(values: list[str], *texts: str) -> None:
    for value in values:
        for text in texts:
            assert value not in text, f"a token value shows in: {text[:300]}"


# ---- a token rotated by something else: the Secret read again on a 401 ---------------------------------

def test_an_expired_token_is_replaced_by_the_one_a_refresher_put_in_the_secret(idp, kube, caplog):
    caplog.set_level(logging.DEBUG)
    oscar = simulator(idp)
    first = oscar.issue_access_token()
    put_secret(idp, "rotated-token", {"token": first})
    batch = spec(idp, "rotated-token")
    client = resolver(kube).oscar_client(batch.clusters[0])
    assert client.service(SERVICE)["name"] == SERVICE

    # An hour later: the token expired, and oidc-agent (or a CronJob) put a fresh one in the Secret.
    oscar.expire_access_tokens()
    second = oscar.issue_access_token()
    put_secret(idp, "rotated-token", {"token": second})
    refused = oscar.expired_refusals
    assert client.service(SERVICE)["name"] == SERVICE
    assert client.cluster_status()["cluster"]
    assert oscar.expired_refusals == refused + 1     # one 401, then the renewed token

    # Expired again, and nobody rotated it: the 401 stands, a person must act.
    oscar.expire_access_tokens()
    with pytest.raises(OscarError, match="OSCAR rejected the credentials") as rejected:
        client.service(SERVICE)
    assert rejected.value.status == 401
    waiting = waiting_of(lambda: resolver(kube).service(client, batch))
    assert waiting.reason == "OscarUnauthorized" and waiting.retry.name == "NEEDS_A_PERSON"
    assert_nowhere([first, second], str(rejected.value), waiting.message, caplog.text)


def test_a_secret_gone_while_the_token_expired_says_so(idp, kube):
    oscar = simulator(idp)
    put_secret(idp, "gone-later", {"token": oscar.issue_access_token()})
    client = resolver(kube).oscar_client(spec(idp, "gone-later").clusters[0])
    idp.call(lambda: idp.kube.delete("v1/secrets", "default", "gone-later"))
    oscar.expire_access_tokens()
    with pytest.raises(OscarError) as rejected:
        client.jobs(SERVICE).__next__()
    assert rejected.value.status == 401
    assert "OSCAR rejected the credentials, and no others could be read: Secret default/gone-later does not exist" \
        in str(rejected.value)


# ---- refresh keys: the operator runs the refresh-token grant ------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refresh_keys_refresh_ahead_of_expiry_without_a_401(idp):
    oscar, clock = simulator(idp), FakeClock()
    client = OscarClient(idp.info["oscar"]["endpoint"], refresh_keys(idp), grants=RefreshGrants(clock=clock))
    grants, refused = oscar.grants, oscar.expired_refusals
    client.authorize()
    assert oscar.grants == grants + 1
    clock.now = 539.0                     # 61 s of 600 left: the token is used
    assert client.service(SERVICE)["name"] == SERVICE
    assert oscar.grants == grants + 1
    clock.now = 541.0                     # less than a minute left: a new token first
    assert client.service(SERVICE)["name"] == SERVICE
    assert oscar.grants == grants + 2 and oscar.expired_refusals == refused


def test_refresh_keys_refresh_after_a_401(idp):
    oscar = simulator(idp)
    client = OscarClient(idp.info["oscar"]["endpoint"], refresh_keys(idp), grants=RefreshGrants())
    assert client.service(SERVICE)["name"] == SERVICE
    grants, refused = oscar.grants, oscar.expired_refusals
    oscar.expire_access_tokens()          # OSCAR's clock, not ours, says the token is over
    assert [name for name, _ in client.jobs(SERVICE)] == []
    assert (oscar.grants, oscar.expired_refusals) == (grants + 1, refused + 1)


def test_the_resolver_gets_the_first_access_token_before_anything_reaches_oscar(idp, kube):
    put_secret(idp, "refresh-keys", idp.info["oidc"])
    oscar = simulator(idp)
    grants = oscar.grants
    client = resolver(kube).oscar_client(spec(idp, "refresh-keys").clusters[0])
    assert oscar.grants == grants + 1     # unless another client already holds a token of these keys
    assert resolver(kube).service(client, spec(idp, "refresh-keys"))["name"] == SERVICE


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("changes", "reason", "says"), [
    ({"refreshToken": "revoked-refresh-token-7f3kq9"}, "TokenRefreshFailed",
     "refused the refresh-token grant (400: invalid_grant: Invalid refresh token); put a new refresh token"),
    ({"clientId": "not-our-client"}, "TokenRefreshFailed", "(401: invalid_client)"),
    ({"tokenEndpoint": "http://127.0.0.1:{closed}/oidc/token"}, "OscarUnavailable",
     "cannot reach the OIDC token endpoint http://127.0.0.1:{closed}/oidc/token (connection refused)"),
    ({"tokenEndpoint": "http://localhost:{closed}/oidc/token"}, "EndpointNotAllowed",
     "names a host this operator may not send credentials to (its --allow-oscar hosts: 127.0.0.1:*)"),
])
def test_a_refresh_that_fails_says_why_and_never_the_token(idp, kube, caplog, changes, reason, says):
    caplog.set_level(logging.DEBUG)
    closed = _closed_port()
    values = {**idp.info["oidc"], "clientSecret": "client-secret-value-k2j4",
              **{key: value.format(closed=closed) for key, value in changes.items()}}
    put_secret(idp, f"refresh-{reason.lower()}", values)
    waiting = waiting_of(lambda: resolver(kube).oscar_client(
        spec(idp, f"refresh-{reason.lower()}").clusters[0]))
    assert waiting.reason == reason
    assert says.format(closed=closed) in waiting.message
    assert waiting.retry.name == ("CLEARS_BY_ITSELF" if reason == "OscarUnavailable" else "NEEDS_A_PERSON")
    assert_nowhere([values["refreshToken"], values["clientSecret"]], waiting.message, caplog.text)


def test_a_secret_updated_with_new_refresh_keys_wins_and_a_revoked_one_says_so(idp, kube, caplog):
    caplog.set_level(logging.DEBUG)
    put_secret(idp, "refresh-then-revoked", idp.info["oidc"])
    client = resolver(kube).oscar_client(spec(idp, "refresh-then-revoked").clusters[0])
    assert client.service(SERVICE)
    bad = "revoked-refresh-token-a81xz2"
    put_secret(idp, "refresh-then-revoked", {**idp.info["oidc"], "refreshToken": bad})
    simulator(idp).expire_access_tokens()
    with pytest.raises(OscarError) as rejected:
        client.service(SERVICE)
    assert rejected.value.status == 401
    assert ("OSCAR rejected the credentials, and the OIDC token endpoint " in str(rejected.value)
            and "(400: invalid_grant: Invalid refresh token)" in str(rejected.value))
    assert_nowhere([bad, idp.info["oidc"]["refreshToken"]], str(rejected.value), caplog.text)


# ---- many threads, one renewal ------------------------------------------------------------------------

def _at_once(call: Any) -> list[Any]:
    """`call()` from THREADS threads released together; their results (or exceptions)."""
    barrier, results = threading.Barrier(THREADS), [None] * THREADS

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:   # noqa: BLE001 - returned for the assertion to show
            results[index] = error
    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_sixteen_threads_refused_at_once_renew_once(idp):
    oscar = simulator(idp)
    renewals: list[Login] = []
    refused = oscar.expired_refusals

    def renew() -> Login:
        # Held until the other threads' calls were refused too, so that they all fail with the same token; for 5 s
        # at most, since a thread that reached the client after this renewal began waits for it instead of sending.
        deadline = time.monotonic() + 5
        while oscar.expired_refusals - refused < THREADS and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        renewals.append(Bearer(oscar.issue_access_token()))
        return renewals[-1]

    client = OscarClient(idp.info["oscar"]["endpoint"], Bearer(oscar.issue_access_token()), renew=renew,
                         pool_size=THREADS)
    oscar.expire_access_tokens()
    results = _at_once(lambda: client.service(SERVICE)["name"])
    assert results == [SERVICE] * THREADS
    assert len(renewals) == 1
    assert oscar.expired_refusals - refused >= 2, "the threads did not meet the 401 together"


def test_sixteen_threads_refused_at_once_grant_once(idp):
    oscar = simulator(idp)
    reads: list[int] = []
    keys = refresh_keys(idp)

    def renew() -> Login:   # the Secret read again: the same keys
        reads.append(1)
        return keys

    client = OscarClient(idp.info["oscar"]["endpoint"], keys, renew=renew, grants=RefreshGrants(),
                         pool_size=THREADS)
    client.authorize()
    oscar.expire_access_tokens()
    grants, refused = oscar.grants, oscar.expired_refusals
    results = _at_once(lambda: client.service(SERVICE)["name"])
    assert results == [SERVICE] * THREADS
    assert len(reads) == 1 and oscar.grants == grants + 1
    assert oscar.expired_refusals > refused


# ---- a token endpoint that rotates refresh tokens -------------------------------------------------------

def test_a_rotated_refresh_token_is_kept_for_the_next_grant_and_shared():
    with SandboxThread(SandboxConfig(items=0, bucket="rotation-bucket", token_lifetime=600,
                                     rotate_refresh_tokens=True)) as rotating:
        oscar, grants = simulator(rotating), RefreshGrants()
        endpoint, keys = rotating.info["oscar"]["endpoint"], refresh_keys(rotating)
        first = OscarClient(endpoint, keys, grants=grants)
        assert first.service(SERVICE)            # grant 1 spent the Secret's refresh token
        oscar.expire_access_tokens()
        assert first.service(SERVICE)            # grant 2, with the refresh token grant 1 rotated to
        again = OscarClient(endpoint, keys, grants=grants)   # the batch's client made anew, same Secret
        assert again.service(SERVICE)
        assert oscar.grants == 2
        # Without the rotated token, the Secret's own is spent: the endpoint refuses it.
        with pytest.raises(OscarError, match="invalid_grant") as refused:
            OscarClient(endpoint, keys, grants=RefreshGrants()).authorize()
        assert refused.value.status == 401 and keys.refresh_token not in str(refused.value)


def test_the_sandbox_commands_take_a_token_lifetime():
    parser = argparse.ArgumentParser()
    add_sandbox_options(parser)
    assert config_from_args(parser.parse_args([])).token_lifetime is None
    assert config_from_args(parser.parse_args(["--token-lifetime", "2.5"])).token_lifetime == 2.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--token-lifetime", "0"])
