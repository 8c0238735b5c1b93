"""The project keeps its promises: packaging, public surface, import floors, quick start."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import suno_nb

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "suno_nb"

# conda-forge names that differ from the PyPI names.
CONDA_TO_PYPI = {"pysoundfile": "soundfile", "matplotlib-base": "matplotlib"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(r) for r in meta["dependencies"]}
    for extra in meta["optional-dependencies"].values():  # dev installs every extra
        pypi |= {_name(r) for r in extra if _name(r) != "suno_nb"}
    conda = set()
    deps = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in deps.splitlines():
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.-]+)", line)
        if m and m.group(1) not in ("python", "pip"):
            conda.add(CONDA_TO_PYPI.get(_name(m.group(1)), _name(m.group(1))))
    assert conda == pypi


def test_packaging_metadata_license_and_one_version():
    """An SPDX license with its file, classifiers, a changelog, and the version in one place."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "version" not in meta and meta["dynamic"] == ["version"]
    assert not any(c.startswith("License ::") for c in meta["classifiers"])  # PEP 639: SPDX only
    assert "Framework :: Jupyter" in meta["classifiers"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {suno_nb.__version__}" in changelog or "## Unreleased" in changelog
    from importlib.metadata import version

    assert version("suno_nb") == suno_nb.__version__


def test_all_is_honest():
    assert len(set(suno_nb.__all__)) == len(suno_nb.__all__)
    for name in suno_nb.__all__:
        assert hasattr(suno_nb, name), name
    public = {
        n
        for n in vars(suno_nb)
        if not n.startswith("_") and not isinstance(getattr(suno_nb, n), type(sys))
    }
    assert public <= set(suno_nb.__all__) | {"annotations"}


# Imports flow downward (docs/architecture.md).  A module may import package modules on a
# lower floor only; a room (sandbox/, widgets/) may import itself.
FLOORS = {
    "errors": 0,
    "paths": 0,
    "progress": 0,
    "extras": 1,
    "signing": 1,
    "credentials": 1,
    "contract": 1,
    "logbook": 1,
    "audio": 1,
    "rows": 1,
    "rules": 2,
    "views": 2,
    "payloads": 2,
    "server": 2,
    "client_errors": 2,
    "throttle": 2,
    "lyrics": 2,
    "events": 3,
    "tunnel": 3,
    "sandbox": 3,
    "analysis": 3,
    "client_base": 3,
    "client_lyrics": 3,
    "client_checks": 3,
    "client_media": 3,
    "store": 4,
    "client": 4,
    "master": 4,
    "receiver": 5,
    "poller": 5,
    "frame": 5,
    "batch": 5,
    "session": 6,
    "tutorials": 6,
    "widgets": 7,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
# Third-party packages that only their own room may import.
ROOMS = {
    "pyngrok": {"tunnel"},
    "ipywidgets": {"widgets"},
    "anywidget": {"widgets"},
    "uvicorn": {"server"},
    "starlette": {"sandbox"},
    "pyloudnorm": {"analysis"},
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, is_internal) pairs imported by a file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = node.module.split(".")[0] if node.module else None
                if base is None:  # from . import x
                    found += [(a.name, True) for a in node.names]
                elif node.level == 1 or path.parent != PKG:
                    found.append((base, True))
            elif node.module and node.module.startswith("suno_nb"):
                parts = node.module.split(".")
                found.append((parts[1] if len(parts) > 1 else "__init__", True))
            elif node.module:
                found.append((node.module.split(".")[0], False))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], False) for a in node.names]
    return found


def _room(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_imports_flow_downward():
    problems = []
    for path in PKG.rglob("*.py"):
        room = _room(path)
        floor = FLOORS[room]
        for name, internal in _imports(path):
            if internal:
                if (
                    path.parent != PKG
                    and path.parent.name == room
                    and (path.parent / f"{name}.py").exists()
                ):
                    continue  # inside its own room
                if name == room:
                    continue
                if FLOORS.get(name, 99) >= floor:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
            elif name in ROOMS and room not in ROOMS[name]:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def _third_party_names(tree: ast.Module) -> set[str]:
    """Names a module binds to third-party modules or their members (not the stdlib's)."""
    names: set[str] = set()

    def third(module: str) -> bool:
        top = module.split(".")[0]
        return top != "suno_nb" and top not in sys.stdlib_module_names

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if third(a.name))
        elif isinstance(node, ast.ImportFrom) and not node.level and third(node.module or ""):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_private_names(trees: list[ast.Module]) -> set[str]:
    """Private attribute and method names the package defines itself (mixins included)."""
    own: set[str] = set()
    for tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                own.add(n.name)
            targets = (
                n.targets
                if isinstance(n, ast.Assign)
                else [n.target]
                if isinstance(n, ast.AnnAssign | ast.AugAssign)
                else []
            )
            for t in targets:
                if isinstance(t, ast.Attribute) and _root(t) == "self":
                    own.add(t.attr)
                elif isinstance(t, ast.Name):
                    own.add(t.id)  # class attributes
    return own


def test_no_private_attribute_of_a_third_party_package_is_used():
    """suno_nb uses uvicorn, pyngrok and the rest through their public API only: no
    ``module._name`` (or ``getattr(module, "_name")``) on anything imported from them, and a
    subclass of a third-party class touches no private name it does not define itself."""
    files = {path: ast.parse(path.read_text()) for path in PKG.rglob("*.py")}
    own = _own_private_names(list(files.values()))
    problems = []
    for path, tree in files.items():
        foreign = _third_party_names(tree)
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if _root(node.value) in foreign:
                    problems.append(f"{where}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr":
                args = node.args
                named = len(args) >= 2 and isinstance(args[1], ast.Constant)
                if named and _private(str(args[1].value)) and _root(args[0]) in foreign:
                    problems.append(f"{where}:{node.lineno} getattr {args[1].value}")
            elif isinstance(node, ast.ClassDef) and any(_root(b) in foreign for b in node.bases):
                for n in ast.walk(node):
                    if (
                        isinstance(n, ast.Attribute)
                        and _private(n.attr)
                        and _root(n) == "self"
                        and n.attr not in own
                    ):
                        problems.append(f"{where}:{n.lineno} self.{n.attr} (inherited)")
    assert problems == []


def test_import_is_light():
    heavy = {"pyngrok", "ipywidgets", "matplotlib", "soundfile", "pandas", "numpy"}
    code = f"import sys, suno_nb; print(sorted({heavy!r} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    return [
        line
        for block in blocks
        for line in block.strip().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_readme_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in commands[1] and "scripts/test.sh" in ci
    assert "python -m suno_nb" in commands[0]


@pytest.mark.slow
def test_readme_main_command_runs_the_quickstart(tmp_path):
    """README command 1, verbatim, from the repository root (CI runs this in a fresh clone)."""
    command = _quick_start_commands()[0]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "against the local sandbox" in out and "executed notebook written to" in out
    table = out.split("this run's results", 1)[1].split("executed notebook", 1)[0]
    assert "callback" in table and "30.00" in table and "45.00" in table
    assert "Collecting" in out or "Requirement already satisfied" in out  # pip talks
    # The one command that opens the notebooks, and it names this checkout's folder.
    assert f"jupyter lab {ROOT / 'notebooks'}" in out
    assert "without encryption" not in out + done.stderr


def test_demo_posts_the_seeds_and_explains_why_two_are_duplicates():
    """``python -m suno_nb demo`` through the real command line (a subprocess)."""
    out = subprocess.run(
        [sys.executable, "-m", "suno_nb", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("-> 200") == 3
    assert "accepted" in out.stdout and out.stdout.count("duplicate") >= 2
    assert "Why 'duplicate': the seed documents use one task id (2fac****9f72)" in out.stdout
    assert "/callback/<token>" in out.stdout and out.stderr == ""
