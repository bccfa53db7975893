"""The CRD's status schema holds every field the controller writes: the API server prunes what it does not name
(the sandbox does too), and a field lost that way is lost at the next restart. The real tier sends the same status
to a real API server (tests/real/test_real_crd.py)."""
from __future__ import annotations

from oscar_batch_sandbox.kube import prune
from test_batch_controller import STATUS_SCHEMA
from written_status import field_paths, written_status


async def test_every_status_field_the_controller_writes_is_in_the_crd():
    status = await written_status()
    written = field_paths(status)
    # The runs took every route: a field missing here means a scenario lost its coverage.
    assert {"redrive", "message", "reason", "sizing.secondsPerItem", "invocations.queued", "failedItemDetails[].key",
            "results", "completionTime", "pinned.manifestKey", "conditions[].observedGeneration", "items.skipped",
            "pinned.outputs.prefix", "pinned.outputs.key", "pinned.outputs.writtenAfter"} <= written, written
    pruned = written - field_paths(prune(STATUS_SCHEMA, status))
    assert not pruned, f"status fields the CRD does not name (a real API server drops them): {sorted(pruned)}"
