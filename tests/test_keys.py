"""Which inputs can be a manifest line: the rule every reader of the manifest can live with, table by table."""
from __future__ import annotations

import unicodedata

import pytest

from oscar_batch.core.keys import (
    LINE_BREAKS,
    UNLISTED_SAMPLE,
    Listing,
    Unlisted,
    is_directory_marker,
    key_of_line,
    manifest_line,
    unlistable,
)

NFC = unicodedata.normalize("NFC", "in/café.jpg")
NFD = unicodedata.normalize("NFD", "in/café.jpg")


@pytest.mark.parametrize(("key", "reason"), [
    ("in/a.jpg", None),
    ("in/a\nb.jpg", "a line feed (U+000A)"),
    ("in/a\rb.jpg", "a carriage return (U+000D)"),
    ("in/a\r\nb.jpg", "a carriage return (U+000D)"),               # the first one found names the reason
    ("in/trailing\n", "a line feed (U+000A)"),
    ("in/v\x0bt", "a line tabulation (U+000B)"),
    ("in/f\x0cf", "a form feed (U+000C)"),
    ("in/\x1c", "a file separator (U+001C)"),
    ("in/\x1d", "a group separator (U+001D)"),
    ("in/\x1e", "a record separator (U+001E)"),
    ("in/n\x85l", "a next line (U+0085)"),
    ("in/l\u2028s", "a line separator (U+2028)"),
    ("in/p\u2029s", "a paragraph separator (U+2029)"),
    ("in/lone\ud800", "lone surrogate"),
    # Listable, byte for byte: whitespace that splits no line, control characters, any script.
    ("in/tab\there.jpg", None),
    ("in/\t", None),
    ("in/ leading.jpg", None),
    ("in/trailing.jpg ", None),
    ("in/ ", None),
    ("in/\x1f unit separator", None),                              # not a line break for splitlines()
    ("in/nul\x00", None),
    ("in/\x7f", None),
    (NFC, None),
    (NFD, None),
    ("in/🐟.jpg", None),
    ("in/\u200bzero-width", None),
    ("in/a\\nb", None),                                            # a backslash and an n, not a line feed
])
def test_unlistable(key, reason):
    found = unlistable(key)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_the_line_breaks_are_exactly_what_splitlines_splits_on():
    splitting = {chr(code) for code in range(0x110000)
                 if not 0xD800 <= code <= 0xDFFF and len(f"a{chr(code)}b".splitlines()) > 1}
    assert splitting == set(LINE_BREAKS)


@pytest.mark.parametrize("key", ["in/a.jpg", "in/tab\there", " both ", NFC, NFD, "in/🐟", "in/nul\x00x", "x" * 1024])
def test_a_listable_key_is_one_line_and_reads_back_as_itself(key):
    line = manifest_line(key)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert len(line.decode().splitlines()) == 1
    assert key_of_line(line[:-1]) == key


def test_nfc_and_nfd_stay_two_keys():
    assert NFC != NFD and manifest_line(NFC) != manifest_line(NFD)
    assert key_of_line(manifest_line(NFD)[:-1]) == NFD


def test_a_line_that_is_not_utf8_is_an_error_not_a_guess():
    with pytest.raises(UnicodeDecodeError):
        key_of_line(b"in/caf\xe9")


@pytest.mark.parametrize(("key", "expected"), [
    ("in/dir/", True), ("/", True), ("in/a.jpg", False), ("in/dir/ ", False), ("in/dir", False),
])
def test_directory_markers(key, expected):
    assert is_directory_marker(key) is expected


def test_listing_counts_every_unlisted_key_and_names_the_first():
    listing = Listing()
    for number in range(UNLISTED_SAMPLE + 5):
        listing.left_out(Unlisted(f"in/{number}\r", "why"))
    assert listing.unlisted == UNLISTED_SAMPLE + 5 and len(listing.sample) == UNLISTED_SAMPLE
    recorded = {"items": {"total": 7, "unlisted": listing.unlisted},
                "unlistedItems": [entry.json() for entry in listing.sample]}
    assert Listing.from_status(recorded) == Listing(7, UNLISTED_SAMPLE + 5, listing.sample)
    assert listing.message().startswith("15 input key(s) left out") and "'in/0\\r', 'in/1\\r'" in listing.message()


def test_a_status_without_unlisted_items_is_a_listing_without_any():
    assert Listing.from_status({"items": {"total": 3}}) == Listing(3, 0, [])
    assert Listing.from_status({"items": {"total": 3}, "unlistedItems": [{"nokey": 1}, "x"]}) == Listing(3, 0, [])
