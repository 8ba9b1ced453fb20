"""The arrows that must never exist between stepup's parts (docs/architecture.md, "Never").

Read from the source with ``ast``, so an import inside a function counts as
much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stepup"
TESTS = ROOT / "tests"
DRF_MODULES = {"api.py", "openapi.py", "permissions.py"}
"""The only modules that may import Django REST framework (``import stepup`` never does)."""


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return imported(path.read_text(), package)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less the bodies of ``if TYPE_CHECKING:`` (imports for annotations only)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def imported(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def sources(folder: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", sources(PACKAGE / "policy"), ids=lambda p: p.name)
def test_the_policy_core_imports_neither_django_nor_the_rest_of_stepup(path: Path) -> None:
    wrong = sorted(
        m
        for m in imports(path)
        if top(m) in {"django", "rest_framework"}
        or (top(m) == "stepup" and not m.startswith("stepup.policy"))
    )
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} imports {wrong}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_in_stepup_imports_the_demo_or_the_tests(path: Path) -> None:
    wrong = sorted(m for m in imports(path) if top(m) in {"project", "tests"})
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} imports {wrong}"


LIBRARY_TESTS = [p for p in sources(TESTS) if "demo" not in p.relative_to(TESTS).parts[:1]]


@pytest.mark.parametrize("path", LIBRARY_TESTS, ids=lambda p: str(p.relative_to(TESTS)))
def test_only_the_demos_own_tests_import_the_demo(path: Path) -> None:
    """The library is tested on its own test project (tests.settings, tests.shop); tests/demo/ alone
    imports ``project`` (and runs on tests.demo.settings)."""
    wrong = sorted(m for m in imports(path) if top(m) == "project")
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: move it to tests/demo/"


def test_the_test_project_installs_nothing_of_the_demo() -> None:
    from django.conf import settings

    assert not [app for app in settings.INSTALLED_APPS if top(app) == "project"]
    assert top(settings.ROOT_URLCONF) == "tests"
    demo_folders = {ROOT / "templates", ROOT / "project"}
    dirs = [Path(folder).resolve() for t in settings.TEMPLATES for folder in t["DIRS"]]
    assert not [d for d in dirs if d in demo_folders or d.parent in demo_folders], dirs


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_drf_adapters_import_drf(path: Path) -> None:
    if path.name in DRF_MODULES and path.parent == PACKAGE:
        return
    wrong = sorted(m for m in imports(path) if top(m) == "rest_framework")
    assert not wrong, f"{path.relative_to(PACKAGE.parent)} imports {wrong}: only {sorted(DRF_MODULES)} may"


@pytest.mark.parametrize("name", ["state.py", "exceptions.py", "challenge.py"])
def test_the_leaf_modules_import_no_other_stepup_module(name: str) -> None:
    """Everything may use them, so they may use nothing of stepup's (no cycle can start there)."""
    wrong = sorted(m for m in imports(PACKAGE / name) if top(m) == "stepup")
    assert not wrong, f"stepup/{name} imports {wrong}"


def test_a_refusal_becomes_a_response_without_deciding_again() -> None:
    assert not {m for m in imports(PACKAGE / "responses.py") if m.startswith("stepup.enforcement")}


def test_the_import_reader_sees_relative_and_nested_imports() -> None:
    """The control: imports the rules above must catch, in every spelling."""
    source = (
        "import django.db\n"
        "from . import engine\n"
        "from ..views import x\n"
        "def f():\n"
        "    from rest_framework import views\n"
        "    import project.demo\n"
        "if TYPE_CHECKING:\n"
        "    import typing_only\n"
    )
    assert imported(source, "stepup.policy") == {
        "django.db",
        "stepup.policy",
        "stepup.views",
        "rest_framework",
        "project.demo",
    }
