"""A batch outlives its OIDC tokens, end to end: the operator as a subprocess (real kopf) against a sandbox whose
OSCAR takes access tokens of two seconds, the batch's Secret applied with kubectl. Either the Secret holds refresh
keys and the operator refreshes (ahead of expiry, and after the 401s the test provokes), or a refresher (the test,
as oidc-agent or a CronJob would) rotates the Secret's `token` and the operator reads it again on a 401.
"""
from __future__ import annotations

import base64
import threading
from collections.abc import Awaitable, Callable

import pytest
import yaml

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.handoff import OSCAR_SECRET, batch_manifests
from support import kubectl, wait_until

LIFETIME = 2.0
# Long enough that the batch sees several token lifetimes: 60 invocations of about 0.8 s on 12 slots.
SLOW = Behaviour(item_seconds=3.0, startup_seconds=1.0, time_scale=0.2, seed=5)


def config(token_lifetime: float | None = LIFETIME) -> SandboxConfig:
    return SandboxConfig(items=60, bucket="oidc-e2e", behaviour=SLOW, token_lifetime=token_lifetime)


def assert_no_token_shows(harness: Harness, tokens: list[str]) -> None:
    batch = harness.batch()
    texts = [harness.operator.log.read_text(), repr(batch.get("status")),
             repr(harness.read(lambda: harness.sandbox.kube.list("v1/events")))]
    for token in tokens:
        assert all(token not in text for text in texts), "a token shows in the log, status or Events"


def run_to_the_end(harness: Harness, every: float, meanwhile: Callable[[], Awaitable[None]]) -> None:
    """Until the batch succeeded and OSCAR deleted its every Job (through /system/*), run `meanwhile` on the
    sandbox's loop every `every` seconds, as the world goes on beside the operator."""
    stop = threading.Event()

    def repeat() -> None:
        while not stop.wait(every):
            harness.sandbox.call(meanwhile)
    threading.Thread(target=repeat, daemon=True).start()
    try:
        batch = harness.wait_for_phase("Succeeded", "Failed", timeout=150)
        assert batch["status"]["phase"] == "Succeeded", batch["status"]
        wait_until(lambda: not harness.jobs(), timeout=60, message="every Job deleted through OSCAR's /system")
    finally:
        stop.set()


@pytest.mark.timeout(180)
def test_a_batch_outlives_its_tokens_by_refreshing_them(tmp_path):
    with Harness(config(), tmp_path) as harness:
        oscar = harness.sandbox.sandbox.oscar
        assert dict(harness.sandbox.info["oidc"]).keys() == {"tokenEndpoint", "clientId", "refreshToken"}
        harness.apply(keepJobs=False, itemsPerInvocation=1)     # the Secret holds the refresh keys
        # Besides expiring by themselves, OSCAR's tokens end before the operator expected now and then: it refreshes
        # on the 401.
        async def expire() -> None:
            oscar.expire_access_tokens()
        run_to_the_end(harness, 1.5, expire)
        assert oscar.grants >= 3, "the batch did not outlive several tokens"
        assert oscar.expired_refusals >= 1, "no call met an expired token"
        assert_no_token_shows(harness, [harness.config.oidc_refresh_token, *oscar.issued_access_tokens])


@pytest.mark.timeout(180)
def test_a_batch_outlives_its_tokens_with_a_refresher_rotating_the_secret(tmp_path):
    with Harness(config(token_lifetime=None), tmp_path) as harness:
        oscar = harness.sandbox.sandbox.oscar
        issued = [oscar.issue_access_token(LIFETIME)]
        # The batch's OSCAR Secret holds a token only, as a refresher (oidc-agent, a CronJob) keeps it.
        *secrets, batch = batch_manifests(harness.sandbox.info, name="batch", keepJobs=False, itemsPerInvocation=1)
        next(doc for doc in secrets if doc["metadata"]["name"] == OSCAR_SECRET)["stringData"] = {"token": issued[0]}
        path = tmp_path / "batch.yaml"
        path.write_text(yaml.safe_dump_all([*secrets, batch]))
        kubectl(harness.kubeconfig, "apply", "--validate=false", "-f", str(path))

        async def refresh() -> None:   # every second a token of two seconds, as oidc-agent keeps one fresh
            issued.append(oscar.issue_access_token(LIFETIME))
            await harness.sandbox.kube.patch("v1/secrets", "default", OSCAR_SECRET, {"data": {
                "token": base64.b64encode(issued[-1].encode()).decode()}})
        run_to_the_end(harness, 1.0, refresh)
        assert len(issued) >= 4 and oscar.expired_refusals >= 1
        assert oscar.grants == 0
        assert_no_token_shows(harness, issued)
