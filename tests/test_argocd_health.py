"""The Argo CD health check (manifests/argocd/health.lua) run by a real Lua 5.1 interpreter, the dialect of
Argo CD's gopher-lua, over OscarBatchJobs in every phase, with every reason that needs a person and with
fields missing; and the argocd-cm snippet embedding exactly that file.

`python tests/test_argocd_health.py` writes the snippet again from health.lua.
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from lupa import lua51

from oscar_batch.controller.resolver import NEEDS_A_PERSON

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEALTH = ROOT / "manifests" / "argocd" / "health.lua"
SNIPPET = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
KEY = "resource.customizations.health.batch.oscarbatch.dev_OscarBatchJob"
# The InvalidSpec condition's reason for a pinned field changed: a person must put it back.
DEGRADING = NEEDS_A_PERSON | {"ImmutableFieldChanged"}
# Reasons that clear by themselves (a peer down, Kueue's queue): still Progressing.
TRANSIENT = ("OscarUnavailable", "InvocationFailed", "StorageUnavailable", "JobsNotListed", "WaitingForKueue")


def _lua_value(lua: Any, value: Any) -> Any:
    """JSON → Lua as Argo CD hands an object over: objects and arrays as tables (arrays 1-based), null as nil."""
    if isinstance(value, dict):
        return lua.table_from({k: _lua_value(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return lua.table_from([_lua_value(lua, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str | None]:
    """(hs.status, hs.message) of the check on `obj`, in a fresh interpreter as Argo CD runs each check."""
    lua = lua51.LuaRuntime()
    lua.globals().obj = _lua_value(lua, obj)
    hs = lua.execute(HEALTH.read_text())
    return hs["status"], hs["message"]


def condition(kind: str, true: bool, reason: str, message: str | None = "") -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T00:00:00Z"}


def batch(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "batch.oscarbatch.dev/v1alpha1", "kind": "OscarBatchJob",
                           "metadata": {"name": "b", "namespace": "default"}, "spec": {"service": "fish"}}
    if status is not None:
        obj["status"] = status
    return obj


CASES = [
    # (id, status, expected health, expected message)
    ("fresh, no status", None, "Progressing", "waiting for the operator"),
    ("empty status", {}, "Progressing", "waiting for the operator"),
    ("conditions but no phase yet", {"conditions": [condition("InvalidSpec", False, "SpecAccepted", "ok")]},
     "Progressing", "waiting for the operator"),
    ("pending without conditions", {"phase": "Pending"}, "Progressing", "Pending"),
    ("pending, empty conditions", {"phase": "Pending", "conditions": []}, "Progressing", "Pending"),
    ("listing", {"phase": "Listing", "conditions": [condition("Progressing", True, "Listing", "listing s3://b/")]},
     "Progressing", "listing s3://b/"),
    ("running", {"phase": "Running", "progress": "3/10", "conditions": [
        condition("Progressing", True, "RangesRunning", "4 range(s) in flight")]}, "Progressing",
     "4 range(s) in flight"),
    ("running, spec accepted again", {"phase": "Running", "conditions": [
        condition("Progressing", True, "RangesRunning", "4 range(s) in flight"),
        condition("InvalidSpec", False, "SpecAccepted", "the live spec is in effect")]},
     "Progressing", "4 range(s) in flight"),
    ("redriven", {"phase": "Running", "conditions": [
        condition("Progressing", True, "Redriven", "redrive 1: 3 failed item(s) run again"),
        condition("Failed", False, "Redriven", "redrive 1: 3 failed item(s) run again")]},
     "Progressing", "redrive 1: 3 failed item(s) run again"),
    ("suspended", {"phase": "Suspended", "conditions": [condition("Progressing", False, "Suspended", "2 in flight")]},
     "Suspended", "2 in flight"),
    ("suspended without a message", {"phase": "Suspended"}, "Suspended", "suspended: no new ranges are invoked"),
    ("succeeded", {"phase": "Succeeded", "message": "10 of 10 items succeeded", "conditions": [
        condition("Progressing", False, "AllItemsSucceeded", "10 of 10 items succeeded"),
        condition("Complete", True, "AllItemsSucceeded", "10 of 10 items succeeded")]},
     "Healthy", "10 of 10 items succeeded"),
    ("succeeded, only status.message", {"phase": "Succeeded", "message": "nothing to do"}, "Healthy", "nothing to do"),
    ("succeeded, nothing said", {"phase": "Succeeded", "message": "", "conditions": [
        condition("Complete", True, "AllItemsSucceeded", "")]}, "Healthy", "the batch succeeded"),
    ("failed", {"phase": "Failed", "conditions": [
        condition("Progressing", False, "ItemsFailed", "1 item(s) failed"),
        condition("Complete", False, "ItemsFailed", "1 item(s) failed"),
        condition("Failed", True, "ItemsFailed", "1 item(s) failed; line 7 (input/7.jpg)")]},
     "Degraded", "1 item(s) failed; line 7 (input/7.jpg)"),
    ("failed, no conditions", {"phase": "Failed"}, "Degraded", "the batch failed"),
    ("failed, condition without message", {"phase": "Failed", "message": "the service fails everywhere",
                                           "conditions": [condition("Failed", True, "ServiceFailing", None)]},
     "Degraded", "the service fails everywhere"),
    ("invalid live edit while running", {"phase": "Running", "conditions": [
        condition("Progressing", True, "RangesRunning", "4 range(s) in flight"),
        condition("InvalidSpec", True, "ImmutableFieldChanged", "spec.service cannot change")]},
     "Degraded", "spec.service cannot change"),
    ("invalid live edit while suspended", {"phase": "Suspended", "conditions": [
        condition("Progressing", False, "Suspended", "0 in flight"),
        condition("InvalidSpec", True, "InvalidSpec", "spec.retries: must be at most 100")]},
     "Degraded", "spec.retries: must be at most 100"),
    ("needs a person, empty message", {"phase": "Pending", "message": "", "conditions": [
        condition("Progressing", False, "KeyConflict", "")]}, "Degraded", "KeyConflict"),
    ("condition without type", {"phase": "Running", "conditions": [{"status": "False", "reason": "KeyConflict"}]},
     "Progressing", "Running"),
    # A condition that says True is not waiting for anything, whatever its reason.
    ("needs-a-person reason but True", {"phase": "Running", "conditions": [
        condition("Progressing", True, "SecretNotFound", "x")]}, "Progressing", "x"),
]


@pytest.mark.parametrize(("status", "expected", "message"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_health(status: dict[str, Any] | None, expected: str, message: str) -> None:
    assert health(batch(status)) == (expected, message)


@pytest.mark.parametrize("phase", ["Pending", "Running", "Listing"])
@pytest.mark.parametrize("reason", sorted(NEEDS_A_PERSON))
def test_every_reason_that_needs_a_person_is_degraded_in_any_unfinished_phase(reason: str, phase: str) -> None:
    message = f"{reason}: see the README's Troubleshooting"
    status = {"phase": phase, "message": message, "conditions": [condition("Progressing", False, reason, message)]}
    assert health(batch(status)) == ("Degraded", message)


@pytest.mark.parametrize("reason", TRANSIENT)
def test_reasons_that_clear_by_themselves_are_progressing(reason: str) -> None:
    assert reason not in DEGRADING
    status = {"phase": "Running", "conditions": [condition("Progressing", reason == "WaitingForKueue", reason, "m")]}
    assert health(batch(status)) == ("Progressing", "m")


def test_the_lua_names_exactly_the_reasons_that_need_a_person() -> None:
    table = re.search(r"local needsAPerson = \{(.*?)\n\}", HEALTH.read_text(), re.S)
    assert table, "needsAPerson table not found"
    assert set(re.findall(r"(\w+) = true", table.group(1))) == DEGRADING


def test_every_phase_of_the_crd_has_a_health() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "batchjob.yaml").read_text())
    phases = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "phase"]["enum"]
    expected = {"Pending": "Progressing", "Listing": "Progressing", "Running": "Progressing",
                "Suspended": "Suspended", "Succeeded": "Healthy", "Failed": "Degraded"}
    assert {phase: health(batch({"phase": phase}))[0] for phase in phases} == expected


def render_snippet() -> str:
    """argocd-cm.yaml as it must be: its header as written, then health.lua indented under the key."""
    head = SNIPPET.read_text().split(f"  {KEY}: |\n")[0]
    body = "".join(f"    {line}" if line.strip() else "\n" for line in HEALTH.read_text().splitlines(keepends=True))
    return f"{head}  {KEY}: |\n{body}"


def test_the_argocd_cm_snippet_embeds_exactly_health_lua() -> None:
    snippet = yaml.safe_load(SNIPPET.read_text())
    assert (snippet["kind"], snippet["metadata"]["name"], snippet["metadata"]["namespace"]) == \
        ("ConfigMap", "argocd-cm", "argocd")
    assert snippet["data"] == {KEY: HEALTH.read_text()}, \
        "manifests/argocd/argocd-cm.yaml differs from health.lua: run `python tests/test_argocd_health.py`"
    assert SNIPPET.read_text() == render_snippet()


def test_the_snippet_merges_into_an_existing_argocd_cm(tmp_path: pathlib.Path) -> None:
    """As the README installs it: a merge patch that keeps the settings already there."""
    existing = tmp_path / "argocd-cm.yaml"
    existing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "argocd-cm", "namespace": "argocd"},
                                        "data": {"url": "https://argocd.example.org"}}))
    result = subprocess.run([str(pathlib.Path(sys.executable).parent / "kubectl"), "patch", "--local", "-f",
                             str(existing), "--type", "merge", "--patch-file", str(SNIPPET), "-o", "json"],
                            capture_output=True, text=True, timeout=60, env={"KUBECONFIG": "/dev/null"}, check=True)
    assert json.loads(result.stdout)["data"] == {"url": "https://argocd.example.org", KEY: HEALTH.read_text()}


if __name__ == "__main__":
    SNIPPET.write_text(render_snippet())
