"""The package's imports follow the floors that docs/design.md declares.

Every import of a keras_oltr module (function-local ones included) must go to a
lower floor or stay inside its own package; no module imports keras_oltr inside a
function; the module graph has no circle. The floors are read from design.md's
``floors`` block, so the document and the code cannot drift apart.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
CLI_FOLDERS = ("trainers", "export")


def _floors():
    """{component: floor} from the ```floors block of docs/design.md."""
    text = DESIGN.read_text(encoding="utf-8")
    block = re.search(r"```floors\n(.*?)```", text, re.S)
    assert block, f"{DESIGN} has no ```floors block"
    floors = {}
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        number, *components = line.split()
        for component in components:
            floors[component] = int(number)
    return floors


def _module_name(path):
    """keras_oltr.data.base for keras_oltr/data/base.py (the package for __init__.py)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """[(imported keras_oltr module, is_function_local, line)] of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    local_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if inner is not node:
                    local_nodes.add(id(inner))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from keras_oltr.x import y` imports the module keras_oltr.x.y when there is
            # one, else the name y of keras_oltr.x.
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in _MODULES else base for a in node.names
            ]
        for name in names:
            if name == "keras_oltr" or name.startswith("keras_oltr."):
                found.append((name, id(node) in local_nodes, node.lineno))
    return found


_MODULES = {_module_name(p) for p in (ROOT / "keras_oltr").rglob("*.py")}


def _component(module, floors):
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in floors:
            return candidate
    return None


def _library_files():
    return sorted((ROOT / "keras_oltr").rglob("*.py"))


def _cli_files():
    return sorted(p for folder in CLI_FOLDERS for p in (ROOT / folder).glob("*.py"))


def test_every_library_module_has_a_floor():
    floors = _floors()
    missing = [
        _module_name(p) for p in _library_files() if _component(_module_name(p), floors) is None
    ]
    assert not missing, f"modules on no floor of docs/design.md: {missing}"


@pytest.mark.parametrize("path", _library_files() + _cli_files(), ids=lambda p: p.name)
def test_imports_run_down_the_floors(path):
    floors = _floors()
    source = _module_name(path)
    own = _component(source, floors) if source.startswith("keras_oltr") else None
    own_floor = floors[own] if own else max(floors.values()) + 1
    problems = []
    for module, local, line in _imports(path):
        if local:
            problems.append(f"line {line}: {module} is imported inside a function")
        target = _component(module, floors)
        if target is None or target == own:
            continue
        if own is not None and target == "keras_oltr":
            continue  # the package root (version, location) is every floor's
        if floors[target] >= own_floor:
            problems.append(
                f"line {line}: {module} (floor {floors[target]}) is not below "
                f"{own or source} (floor {own_floor})"
            )
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_no_import_circles():
    names = {_module_name(p): p for p in _library_files()}
    graph = {}
    for name, path in names.items():
        graph[name] = set()
        for module, _, _ in _imports(path):
            # A package import runs its __init__; count edges to real modules only.
            if module in names and module != name:
                graph[name].add(module)
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
