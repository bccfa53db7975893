"""What the controller's shape promises, checked on its source: time is read in one place, and status is patched
through one writer."""
import ast
import pathlib

CONTROLLER = pathlib.Path(__file__).resolve().parents[1] / "operator" / "oscar_batch" / "controller"


def imported_modules(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_clock_module_reads_time():
    readers = {path.name for path in CONTROLLER.glob("*.py") if imported_modules(path) & {"time", "datetime"}}
    assert readers == {"clock.py"}


def test_only_the_status_writer_patches_status():
    patchers = {path.name for path in CONTROLLER.glob("*.py") if "patch_batch_status" in path.read_text()}
    assert patchers == {"status_writer.py"}
