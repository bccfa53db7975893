"""The sandbox on kmock's public API: what reaches inside kmock stays in `kmock_extension`, whose docstring names
the API kmock lacks for each use; while anything does, the sandbox pins kmock below its next minor release."""
from __future__ import annotations

import ast
import pathlib
import re

import attrs
import kmock

ROOT = pathlib.Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "sandbox" / "oscar_batch_sandbox"
EXTENSION = SANDBOX / "kmock_extension.py"
# A name-mangled attribute (`_KubernetesEmulator__get_obj`): a class's private member, read from outside it.
MANGLED = re.compile(r"_[A-Za-z]\w*__\w+")


def _kmock_private_attributes() -> set[str]:
    """The private state of kmock's public classes: their attrs fields with a leading underscore."""
    classes = [getattr(kmock, name) for name in dir(kmock) if not name.startswith("_")]
    return {field.name for cls in classes if isinstance(cls, type) and attrs.has(cls)
            for field in attrs.fields(cls) if field.name.startswith("_")}


PRIVATE = _kmock_private_attributes()


def private_uses(path: pathlib.Path) -> list[str]:
    """Where a module imports a kmock submodule (`kmock._internal`) or reads kmock's private state."""
    uses: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kmock."):
            uses.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Import):
            uses += [(node.lineno, f"import {alias.name}") for alias in node.names if alias.name.startswith("kmock.")]
        elif isinstance(node, ast.Attribute) and (node.attr in PRIVATE or MANGLED.fullmatch(node.attr)):
            uses.append((node.lineno, f".{node.attr}"))
    return [f"{path.name}:{line}: {use}" for line, use in sorted(uses)]


def test_kmocks_private_state_is_known_to_the_scan():
    assert {"_requests", "_payloads", "_source", "_disabled", "_buses", "_lock"} <= PRIVATE


def test_only_the_extension_module_reaches_inside_kmock():
    modules = sorted(path for path in SANDBOX.glob("*.py") if path != EXTENSION)
    assert len(modules) > 5
    assert [use for path in modules for use in private_uses(path)] == []


def test_kmock_stays_pinned_while_the_extension_reaches_inside_it():
    dependencies = (ROOT / "sandbox" / "pyproject.toml").read_text()
    requirement = next(line for line in dependencies.splitlines() if line.strip().startswith('"kmock'))
    pinned = re.search(r"<\s*0\.9", requirement) is not None
    assert pinned == bool(private_uses(EXTENSION)), requirement
    assert not pinned or "kmock_extension" in requirement, "the pin names its reason"
