"""Declared outputs: where a service writes what it made of each input, and which inputs have theirs. Pure.

The outputs in the bucket are the truth of what is done. A batch that declares them (`spec.outputs`) lists
the output prefix once and leaves out of the manifest the inputs whose outputs exist; a range that failed or
was disrupted runs again only for its lines without outputs.

An output is named by templates over the input's key relative to `storage.prefix` (`{key}`, and its parts
`{dir}` `{name}` `{stem}` `{ext}`: `a/b.jpg` → `a/`, `b.jpg`, `b`, `.jpg`), relative to the output prefix; an
input with several templates is done when all of them exist. Without a template, an input is done when an
object under the output prefix is named like the input, with or without its extension, followed by any
extension: `a/b.jpg` → `a/b.json` or `a/b.jpg.json`.

The outputs found are kept as 64-bit hashes of the names they stand for (8 bytes each, 16 with their times):
a prefix of a million outputs costs 8–16 MB, not a million strings. Two different names with one hash would
take an input for done; at a million outputs and a million inputs the chance is about 5 in 100 million.
"""
from __future__ import annotations

import array
import bisect
import dataclasses
import datetime
import hashlib
import string
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDERS = ("key", "dir", "name", "stem", "ext")
MAX_TEMPLATES = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutputsSpec:
    """`spec.outputs`, checked (see `spec.parse_spec`)."""
    bucket: str
    prefix: str | None               # None: the OSCAR service's first output path on the batch's storage
    templates: tuple[str, ...] = ()  # (): the default rule above
    skip_existing: bool = True
    written_after: datetime.datetime | None = None   # older outputs do not count (re-analysis in place)
    newer_than_input: bool = False   # an output counts only when written after its input was last modified


def template_problem(template: str) -> str | None:
    """Why `template` cannot name outputs, or None when it can."""
    try:
        fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(template)
                  if field is not None]
    except ValueError as error:
        return f"{template!r} is not a template ({error}; a literal brace is written {{{{ or }}}})"
    unknown = sorted({field for field, _, _ in fields if field not in PLACEHOLDERS})
    if unknown:
        return (f"{template!r} has the unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    if any(spec or conversion for _, spec, conversion in fields):
        return f"{template!r} has a format spec or conversion; only plain placeholders such as {{key}} are known"
    if not {"key", "name", "stem"} & {field for field, _, _ in fields}:
        return f"{template!r} would name one output for many inputs: it needs {{key}}, {{name}} or {{stem}}"
    return None


def parts(relative: str) -> dict[str, str]:
    """The placeholders of an input's key relative to the input prefix."""
    directory, _, name = relative.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    if not stem:   # no extension, or a dot file such as ".env"
        stem, dot, extension = name, "", ""
    return {"key": relative, "dir": f"{directory}/" if directory else "", "name": name, "stem": stem,
            "ext": f"{dot}{extension}"}


def output_names(templates: Iterable[str], relative: str) -> list[str]:
    """The outputs (relative to the output prefix) an input must have under `templates`."""
    values = parts(relative)
    return [template.format(**values) for template in templates]


def default_stands_for(relative_output: str) -> str | None:
    """Under the default rule, the input name (with or without its extension) an output stands for: the output's
    name without its last extension; None for a name without one."""
    directory, slash, name = relative_output.rpartition("/")
    stem, dot, _ = name.rpartition(".")
    if not dot or not stem:
        return None
    return f"{directory}{slash}{stem}"


def default_candidates(relative_input: str) -> tuple[str, ...]:
    """The names an output may stand for to count for this input under the default rule."""
    values = parts(relative_input)
    without_extension = f"{values['dir']}{values['stem']}"
    return (relative_input,) if without_extension == relative_input else (relative_input, without_extension)


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


class OutputIndex:
    """The outputs found under a prefix, by the names they stand for, with when each was written. `add` each
    listed output (its key relative to the output prefix), `freeze`, then ask `done` of each input."""

    def __init__(self, outputs: OutputsSpec) -> None:
        self._outputs = outputs
        self._hashes = array.array("Q")
        self._times = array.array("d")   # parallel to _hashes while adding; by hash once frozen
        self._frozen = False

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, relative_output: str, modified: datetime.datetime | None) -> None:
        written_after = self._outputs.written_after
        if written_after is not None and (modified is None or modified <= written_after):
            return
        name = relative_output if self._outputs.templates else default_stands_for(relative_output)
        if name is None:
            return
        self._hashes.append(_hash(name))
        self._times.append(modified.timestamp() if modified is not None else float("-inf"))

    def freeze(self) -> OutputIndex:
        """Sort for lookups; of several outputs standing for one name, the newest counts. Each hash is sorted
        with its position in one int (hash << 32 | position): a list of those is ~48 bytes an output while it
        sorts, where (hash, time) tuples by a key function took ~220."""
        order = sorted((value << 32) | position for position, value in enumerate(self._hashes))
        hashes, times = array.array("Q"), array.array("d")
        for packed in order:
            value, written = packed >> 32, self._times[packed & 0xFFFFFFFF]
            if hashes and hashes[-1] == value:
                times[-1] = max(times[-1], written)
            else:
                hashes.append(value)
                times.append(written)
        del order
        self._hashes, self._times, self._frozen = hashes, times, True
        return self

    def _written(self, name: str) -> float | None:
        wanted = _hash(name)
        position = bisect.bisect_left(self._hashes, wanted)
        if position < len(self._hashes) and self._hashes[position] == wanted:
            return self._times[position]
        return None

    def done(self, relative_input: str, input_modified: datetime.datetime | None = None) -> bool:
        """Whether the input has its outputs (all of them, with templates), written after it when that counts."""
        assert self._frozen, "freeze() the index before asking it"
        # Without the rule, any output counts, even one whose time is unknown (stored as -inf).
        not_before = (input_modified.timestamp() if self._outputs.newer_than_input and input_modified is not None
                      else None)

        def counts(written: float | None) -> bool:
            return written is not None and (not_before is None or written > not_before)

        if self._outputs.templates:
            return all(counts(self._written(name)) for name in output_names(self._outputs.templates, relative_input))
        return any(counts(self._written(name)) for name in default_candidates(relative_input))



def sample_outputs(outputs: OutputsSpec, relative_input: str) -> list[str]:
    """Outputs (relative to the output prefix) an input would have, to check that no output is an input."""
    if outputs.templates:
        return output_names(outputs.templates, relative_input)
    return [f"{relative_input}.json", f"{default_candidates(relative_input)[-1]}.json"]


def _endpoint(url: str) -> str:
    return url.strip().rstrip("/").lower()


def service_output_prefix(service: Mapping[str, Any], *, bucket: str, s3_endpoint: str) -> str | None:
    """The output prefix the OSCAR service's first output names, when it is in `bucket` on the batch's storage;
    None otherwise. The storage is the batch's when the provider is OSCAR's own MinIO (`minio`, `minio.default`:
    its endpoint as OSCAR sees it is often a cluster-internal name, so it cannot be compared) or a MinIO
    provider the service defines with the batch's endpoint; the bucket decides the rest."""
    declared = service.get("output")
    first = declared[0] if isinstance(declared, list) and declared else None
    if not isinstance(first, Mapping):
        return None
    provider, path = str(first.get("storage_provider") or "minio"), str(first.get("path") or "")
    kind, _, identifier = provider.partition(".")
    if kind != "minio":
        return None
    if identifier not in ("", "default"):
        providers = (service.get("storage_providers") or {}).get("minio") or {}
        defined = providers.get(identifier) if isinstance(providers, Mapping) else None
        if not isinstance(defined, Mapping) or _endpoint(str(defined.get("endpoint") or "")) != _endpoint(s3_endpoint):
            return None
    output_bucket, _, folder = path.strip("/").partition("/")
    if output_bucket != bucket:
        return None
    folder = folder.strip("/")
    return f"{folder}/" if folder else ""
