"""Random key sets through listing → manifest → ranges → results, against moto over the S3 protocol: every
listable key is exactly one line (however a service splits the manifest), every unlistable one is accounted for
with its reason, and no line shifts.

The keys go into moto's backend in process (HTTP puts would refuse a line feed, which MinIO and S3 store); the
operator lists and writes through its own minio client over HTTP.
"""
from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oscar_batch.clients import manifest
from oscar_batch.core import items
from oscar_batch.core.keys import LINE_BREAKS, is_directory_marker, unlistable
from oscar_batch.core.ranges import Observation, Outcome, RangeBook
from oscar_batch.core.results import results
from oscar_batch.core.spec import parse_spec
from oscar_batch_sandbox.runner import manifest_entries

BUCKET = "fuzz-keys"
SPECIAL = [*LINE_BREAKS, "\r\n", " ", "\t", "/", "\x00", "\x1f", "\u00e9", "e\u0301", "\U0001f41f", "\u200b",
           "\\", "%", "+", "?", "#", "&", "*"]
KEY_TAILS = st.lists(st.sampled_from(SPECIAL) | st.characters(codec="utf-8"), min_size=1, max_size=12).map("".join)
KEY_SETS = st.lists(KEY_TAILS, unique=True, max_size=16)
prefixes = itertools.count()


def utf8_order(keys):
    return sorted(keys, key=lambda key: key.encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(tails=KEY_SETS, range_size=st.integers(1, 5))
@example(tails=["a\nb", "c\r", "crlf\r\n", "d/", " e ", "\t", "l\u2028s", "caf\u00e9", "cafe\u0301", "\U0001f41f"],
         range_size=2)
def test_every_key_is_one_line_or_accounted_for_and_nothing_shifts(sandbox, tails, range_size):
    info = sandbox.info["s3"]
    prefix = f"fz{next(prefixes)}/"
    spec = parse_spec({"service": "fuzz", "oscar": {"endpoint": "http://oscar.invalid", "credentialsSecret": "o"},
                       "storage": {"endpoint": info["endpoint"], "credentialsSecret": "s", "bucket": BUCKET,
                                   "prefix": prefix},
                       "manifestKey": f"manifests/{prefix}index.txt"})
    s3 = manifest.client(spec, info["accessKey"], info["secretKey"])
    if not s3.bucket_exists(BUCKET):
        s3.make_bucket(BUCKET)
    keys = [prefix + tail for tail in tails]
    for key in keys:
        sandbox.sandbox.s3.put_in_process(BUCKET, key, b"x")

    listing = manifest.write(s3, spec, "uid-fuzz", "default/fuzz")

    inputs = [key for key in utf8_order(keys) if not is_directory_marker(key)]
    listable = [key for key in inputs if unlistable(key) is None]
    left_out = [key for key in inputs if unlistable(key) is not None]
    body = s3.get_object(BUCKET, spec.manifest_key).read()
    assert body == b"".join(key.encode() + b"\n" for key in listable)
    assert body.decode().splitlines() == listable                  # a Python service splitting on any break
    assert (listing.items, listing.unlisted) == (len(listable), len(left_out))
    unlisted = manifest.unlisted_keys(s3, spec)
    assert [(entry.key, entry.reason) for entry in unlisted] == [(key, unlistable(key)) for key in left_out]

    # Ranges over the lines: the service reads each range's keys, the operator names any line from S3.
    book = RangeBook(len(listable), retries=0)
    book.carve([range_size] * len(listable))
    book.carving_recorded(book.carves.frontier)
    processed = []
    for work in book.next_to_dispatch(len(listable) + 1):
        book.invoked(work, job=f"job-{work.start}", started="t", now=0.0, cluster="c")
        processed += [key for _, key in manifest_entries(body.decode(), work.start, work.end)]
        book.observe(Observation(start=work.start, end=work.end, attempt=work.attempt, outcome=Outcome.SUCCEEDED,
                                 job=f"job-{work.start}"))
    assert processed == listable                                    # each exactly once, in its own line
    assert manifest.keys_at(s3, spec, set(range(1, len(listable) + 1))) == dict(enumerate(listable, 1))

    document = json.loads(json.dumps(results(book, batch="default/fuzz", uid="uid-fuzz", service="fuzz",
                                             phase="Succeeded", manifest=spec.uri(spec.manifest_key),
                                             unlisted=listing.unlisted, unlisted_items=unlisted)))
    assert document["items"]["total"] == len(listable) and document["items"]["unlisted"] == len(left_out)
    assert document["succeededItems"] == items.encode(items.Lines([(1, len(listable) + 1)] if listable else []))
    assert [entry["key"] for entry in document["unlistedItems"]] == left_out
