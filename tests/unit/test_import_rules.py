"""Layering rules for services/ and database/, read from the source with `ast`: nothing is imported.

Every checker takes a root directory, so the same code runs on the real tree and on fake trees.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("services", "database")
DAEMON, DAEMON_CLASS, MAX_LINES = "services.enhanced_scheduler", "EnhancedScheduler", 400
MODEL_MAY_IMPORT = ("services.errors", "services.model")


class Rule(NamedTuple):
    """Every entry is a dotted prefix: `services.engine` is it and every `services.engine.*`."""

    importers: tuple[str, ...]  # modules the rule covers ...
    forbidden: tuple[str, ...]  # ... may not import these ...
    exempt: tuple[str, ...] = ()  # ... unless the importer is one of these ...
    allowed: tuple[str, ...] = ()  # ... or the imported module is one of these.


IMPORT_RULES: dict[str, Rule] = {
    "model-imports-only-errors": Rule(("services.model",), OURS, (), MODEL_MAY_IMPORT),
    "only-store-imports-database": Rule(OURS, ("database",), ("services.store", "database")),
    "only-scheduling-imports-apscheduler": Rule(OURS, ("apscheduler",), ("services.scheduling",)),
    "watch-never-imports-engine": Rule(("services.watch",), ("services.engine",)),
    "engine-never-imports-watch": Rule(("services.engine",), ("services.watch",)),
    "nothing-imports-the-daemon": Rule(OURS, (DAEMON,), (DAEMON,)),
    # Notifications read what runs left in the database; they never reach into a run.
    "notify-never-imports-engine": Rule(
        ("services.notify",), ("services.engine", "services.scheduling", "services.watch")
    ),
    "web-works-over-stores-only": Rule(
        ("services.web",),
        (
            "services.engine",
            "services.watch",
            "services.scheduling",
            "services.sync",
            "services.cli",
        ),
    ),
}


class Import(NamedTuple):
    importer: str
    line: int
    target: str
    in_def: bool  # inside a function body: counts for the rules, not for the cycle check
    implicit: bool = False  # `pkg` of `from pkg import submodule`: counts for the cycle check only

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} -> {self.target}"


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@functools.cache
def scan(root: Path) -> dict[str, tuple[Path, ast.Module]]:
    """Our modules by dotted name (a package by its own name), with their file and syntax tree."""
    modules: dict[str, tuple[Path, ast.Module]] = {}
    for path in sorted(p for top in OURS for p in (root / top).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return modules


def _walk(node: ast.AST, in_def: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, in_def
        yield from _walk(child, in_def or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))


@functools.cache
def imports(root: Path) -> tuple[Import, ...]:
    modules, found = scan(root), list[Import]()
    for name, (path, tree) in modules.items():
        for node, in_def in _walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(name, node.lineno, a.name, in_def) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: climb from the importer's own package
                    package = name.split(".")[: None if path.name == "__init__.py" else -1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                found += [Import(name, node.lineno, sub, in_def) for sub in subs]
                if len(subs) < len(node.names) or base in modules:
                    only_subs = len(subs) == len(node.names)
                    found.append(Import(name, node.lineno, base, in_def, only_subs))
    return tuple(found)


def check_import_rule(root: Path, rule: str) -> list[str]:
    r = IMPORT_RULES[rule]
    return [
        f"{i} (rule {rule})"
        for i in imports(root)
        if not i.implicit and under(i.importer, r.importers) and not under(i.importer, r.exempt)
        if under(i.target, r.forbidden) and not under(i.target, r.allowed)
    ]


def _ident(n: ast.Name | ast.Attribute) -> str:
    return n.id if isinstance(n, ast.Name) else n.attr


def _daemon_class_lines(tree: ast.AST) -> Iterator[int]:
    for n in ast.walk(tree):
        if isinstance(n, ast.Name | ast.Attribute) and _ident(n) == DAEMON_CLASS:
            yield n.lineno
        for note in (getattr(n, "annotation", None), getattr(n, "returns", None)):
            for s in ast.walk(note) if isinstance(note, ast.expr) else ():
                if isinstance(s, ast.Constant) and re.search(rf"\b{DAEMON_CLASS}\b", str(s.value)):
                    yield s.lineno  # a string annotation


def check_daemon_class_unused(root: Path) -> list[str]:
    return [
        f"{name}:{line} uses {DAEMON_CLASS}"
        for name, (_, tree) in scan(root).items()
        if under(name, ("services",)) and name != DAEMON
        for line in sorted(set(_daemon_class_lines(tree)))
    ]


def check_no_cycles(root: Path) -> list[str]:
    mods = scan(root)
    edges = [
        i for i in imports(root) if not i.in_def and i.target in mods and i.target != i.importer
    ]
    graph: dict[str, set[str]] = {m: {i.target for i in edges if i.importer == m} for m in mods}

    def reach(start: str) -> set[str]:
        seen, todo = set[str](), [start]
        while todo:
            fresh = graph[todo.pop()] - seen
            seen, todo = seen | fresh, todo + sorted(fresh)
        return seen

    reachable = {m: reach(m) for m in mods}
    cycles = {
        frozenset(m for m in reachable[a] if a in reachable[m]) for a in mods if a in reachable[a]
    }
    return [
        f"import cycle {sorted(c)}: "
        + "; ".join(dict.fromkeys(str(i) for i in edges if i.importer in c and i.target in c))
        for c in sorted(cycles, key=sorted)
    ]


def check_module_length(root: Path) -> list[str]:
    sizes = {name: len(path.read_bytes().splitlines()) for name, (path, _) in scan(root).items()}
    return [f"{name} has {n} lines > {MAX_LINES}" for name, n in sizes.items() if n > MAX_LINES]


def check_package_docstrings(root: Path) -> list[str]:
    found, top = list[str](), root / "services"
    for folder in sorted({p.parent for p in top.rglob("*.py")} - {top}):
        init = folder / "__init__.py"
        if not init.exists():
            found.append(f"{folder.relative_to(root)}/ has no __init__.py")
        elif not (ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").strip():
            found.append(f"{init.relative_to(root)}:1 has no module docstring")
    return found


CHECKS: dict[str, Callable[[Path], list[str]]] = {
    **{rule: functools.partial(check_import_rule, rule=rule) for rule in IMPORT_RULES},
    "no-daemon-class-outside-daemon": check_daemon_class_unused,
    "no-import-cycles": check_no_cycles,
    "module-length": check_module_length,
    "subpackage-docstrings": check_package_docstrings,
}


@pytest.mark.parametrize("rule", CHECKS)
def test_rule_holds_on_the_real_tree(rule: str) -> None:
    if violations := CHECKS[rule](ROOT):
        pytest.fail(f"{rule}: {len(violations)} violation(s)\n" + "\n".join(violations), False)


# A compliant fake tree that every check accepts; each BROKEN case overwrites or adds one file.
DOC = '"""Doc."""'
CLEAN = {
    "services/__init__.py": "",
    "services/errors.py": "",
    "services/log.py": "",
    "services/model/__init__.py": DOC,
    "services/model/a.py": "from services import errors\nfrom . import b",
    "services/model/b.py": "from services.errors import X",
    "services/store/__init__.py": DOC,
    "services/store/s.py": "from database.connection import c",
    "services/scheduling/__init__.py": DOC,
    "services/scheduling/t.py": "from apscheduler.job import Job",
    "services/engine/__init__.py": DOC,
    "services/engine/r.py": "def f() -> None:\n    from services.engine import r",
    "services/enhanced_scheduler.py": "from services.store import s\nclass EnhancedScheduler: ...",
    "database/connection.py": "import database.queries",
    "database/queries.py": "def f() -> None:\n    from database import connection",  # no cycle
}
BROKEN: dict[str, list[tuple[str, str, str]]] = {  # rule: [(file, its text, expected violation)]
    "model-imports-only-errors": [
        ("services/model/x.py", "import database.connection", "model.x:1 -> database.connection"),
        ("services/model/b.py", "\nfrom .. import log", "services.model.b:2 -> services.log"),
        ("services/model/b.py", "import services", "services.model.b:1 -> services (rule"),
    ],
    "only-store-imports-database": [
        ("services/web/h.py", "from database import queries", "web.h:1 -> database.queries"),
    ],
    "only-scheduling-imports-apscheduler": [
        ("services/log.py", "from apscheduler.job import Job", "services.log:1 -> apscheduler.job"),
    ],
    "watch-never-imports-engine": [
        ("services/watch/w.py", "from services.engine import r", "watch.w:1 -> services.engine.r"),
    ],
    "engine-never-imports-watch": [
        (
            "services/engine/r.py",
            "def f():\n    import services.watch.w",
            "r:2 -> services.watch.w",
        ),
    ],
    "nothing-imports-the-daemon": [
        ("database/q.py", "from services import enhanced_scheduler", "q:1 -> services.enhanced_"),
    ],
    "no-daemon-class-outside-daemon": [
        (
            "services/web/h.py",
            "def f(d: 'EnhancedScheduler'): ...",
            "web.h:1 uses EnhancedScheduler",
        ),
        ("services/log.py", "import services\n\nx = services.e.EnhancedScheduler", "log:3 uses"),
    ],
    "no-import-cycles": [
        (
            "services/model/b.py",
            "if T:\n    from services.model import a",
            "['services.model.a', 'servi",
        ),
        (
            "services/model/__init__.py",
            "from services.model.a import Y",
            "['services.model', 'servi",
        ),
    ],
    "module-length": [
        ("database/big.py", "x = 1\n" * MAX_LINES + "x = 1", "database.big has 401 lines")
    ],
    "subpackage-docstrings": [
        (
            "services/store/__init__.py",
            "x = 1",
            "services/store/__init__.py:1 has no module docstring",
        ),
        ("services/ops/deep/t.py", "", "services/ops/deep/ has no __init__.py"),
    ],
}
CASES = [(rule, *case) for rule, cases in BROKEN.items() for case in cases]


def _tree(root: Path, **override: str) -> Path:
    for rel, text in {**CLEAN, **override}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("rule", CHECKS)
def test_rule_accepts_the_clean_fake_tree(tmp_path: Path, rule: str) -> None:
    assert CHECKS[rule](_tree(tmp_path)) == []


@pytest.mark.parametrize(
    ("rule", "path", "text", "expected"), CASES, ids=[f"{c[0]}-{n}" for n, c in enumerate(CASES)]
)
def test_rule_catches_a_violation(
    tmp_path: Path, rule: str, path: str, text: str, expected: str
) -> None:
    violations = CHECKS[rule](_tree(tmp_path, **{path: text}))
    assert any(expected in v for v in violations), violations
