"""Which listed object keys are inputs, and which inputs can be a line of the manifest. Pure.

Services read the manifest as lines of keys: shell scripts with `sed -n` split on "\\n", Python services may use
`str.splitlines()`, which also splits on "\\r" and eight more characters. A key holding any of them would become
two lines and shift every line after it, so such a key is never written: it is *unlisted*, with a reason, and
counted in status and named in the results. Everything else is written as listed, byte for byte: spaces and
tabs at either end, control characters, NFC and NFD spellings of one name (two keys to S3) — the manifest is
the UTF-8 of the key, read back with a strict UTF-8 decoding and split on "\\n" only.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

# What str.splitlines() splits on (its documentation's table); "\n" and "\r" are what every reader splits on.
LINE_BREAKS = {
    "\n": "a line feed (U+000A)",
    "\r": "a carriage return (U+000D)",
    "\x0b": "a line tabulation (U+000B)",
    "\x0c": "a form feed (U+000C)",
    "\x1c": "a file separator (U+001C)",
    "\x1d": "a group separator (U+001D)",
    "\x1e": "a record separator (U+001E)",
    "\x85": "a next line (U+0085)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
}
# A lone surrogate has no UTF-8; S3 keys are UTF-8, so only a client's decoding could produce one.
_UNWRITABLE = re.compile("[" + "".join(LINE_BREAKS) + "\ud800-\udfff]")
UNLISTED_SAMPLE = 10   # unlisted keys named in status; the results name them all


def is_directory_marker(key: str) -> bool:
    """A key ending in "/" (the zero-byte "folder" a console creates): a directory on a mount, never an input."""
    return key.endswith("/")


def unlistable(key: str) -> str | None:
    """Why the input `key` cannot be one manifest line, or None when it can."""
    found = _UNWRITABLE.search(key)
    if found is None:
        return None
    char = found.group()
    if char in LINE_BREAKS:
        return f"the key holds {LINE_BREAKS[char]}, which would split its manifest line in two"
    return "the key is not valid Unicode (a lone surrogate), so it has no UTF-8 line"


def manifest_line(key: str) -> bytes:
    """The manifest line of a listable key: its UTF-8, as listed, and a line feed."""
    return key.encode("utf-8") + b"\n"


def key_of_line(line: bytes) -> str:
    """The key a manifest line (without its line feed) names; strict UTF-8, so a mangled line raises."""
    return line.decode("utf-8")


@dataclasses.dataclass(frozen=True)
class Unlisted:
    key: str
    reason: str

    def json(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason}

    @staticmethod
    def from_json(entry: Any) -> Unlisted | None:
        """An entry of status.unlistedItems or of the unlisted-keys object; None when it is not one."""
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            return None
        return Unlisted(entry["key"], str(entry.get("reason") or ""))


@dataclasses.dataclass
class Listing:
    """What a listing found: how many inputs became manifest lines, how many could not (and the first of those),
    and how many were left out because their outputs exist (`spec.outputs`)."""
    items: int = 0
    unlisted: int = 0
    sample: list[Unlisted] = dataclasses.field(default_factory=list)
    skipped: int = 0

    def left_out(self, entry: Unlisted) -> None:
        self.unlisted += 1
        if len(self.sample) < UNLISTED_SAMPLE:
            self.sample.append(entry)

    @staticmethod
    def from_status(status: Any) -> Listing:
        """The listing as a status recorded it (items.total, items.unlisted, items.skipped, unlistedItems)."""
        counts = status.get("items") or {}
        sample = [found for entry in status.get("unlistedItems") or ()
                  if (found := Unlisted.from_json(entry)) is not None]
        return Listing(int(counts.get("total") or 0), int(counts.get("unlisted") or 0), sample,
                       skipped=int(counts.get("skipped") or 0))

    def message(self) -> str:
        """How many inputs were left out, and the first few by name (escaped, as Python spells them)."""
        shown = ", ".join(repr(entry.key) for entry in self.sample[:3]) + (", …" if self.unlisted > 3 else "")
        return f"{self.unlisted} input key(s) left out of the manifest, as a line break would split their line: {shown}"
