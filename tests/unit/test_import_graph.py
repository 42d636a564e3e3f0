"""The package's imports, read from its source with `ast` (nothing is imported):

* no import circle at all: the imports form no cycle, function-level (lazy) imports included
  (a lazy import hides a circle from the interpreter, not from the reader); importing a
  submodule counts as importing every package `__init__` on its path that the importer is
  not already inside;
* imports run one way, function-level (lazy) imports included: cli, then hub, then training,
  tfhub and deploy, then models, then weights, layers, datasets and preprocessing, then errors. The package
  root (`keras_bigtransfer/__init__.py`) may import anything, and only the CLI imports it;
* TensorFlow-only subpackages stay out of the module-level imports of the layers below them.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "keras_bigtransfer"
SOURCE = os.path.join(ROOT, PACKAGE)

# Higher imports lower (or equal), never the other way.
RANK = {
    "errors": 0,
    "extras": 0,  # the optional-dependency helper: importlib only
    "layers": 1,
    "weights": 1,
    "datasets": 1,
    "preprocessing": 1,
    "export_routes": 1,  # keras only: which backend writes which export format
    "models": 2,
    "distribution": 2,  # keras only: model-parallel layout maps
    "training": 3,
    "tfhub": 3,
    "deploy": 3,
    "hub": 4,
    "cli": 5,
}
ROOT_RANK = 5  # the public API (keras_bigtransfer/__init__.py): the CLI may use it, nothing else


def _modules():
    """{dotted module name: (path, is_package)} for every .py file of the package."""
    found = {}
    for folder, _, files in os.walk(SOURCE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _resolve(importer, is_package, node):
    """The package modules an import statement names (submodules for `from x import y` where y is one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    if module.split(".")[0] != PACKAGE:
        return []
    submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
    if len(submodules) == len(node.names):
        return submodules  # `from package import module, ...`: the package is its path, not a target
    return [module] + submodules


def _imports(module):
    """[(target module, at module level?, line)] for every package import in `module`."""
    path, is_package = MODULES[module]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    top_level = set()

    def walk(nodes):  # statements executed at import time: not inside a def (class bodies and if/try are)
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            top_level.add(id(node))
            walk(ast.iter_child_nodes(node))

    walk(tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _resolve(module, is_package, node):
                found.append((target, id(node) in top_level, node.lineno))
    return found


def _executed(importer, target):
    """The modules that importing `target` runs, seen from `importer`: `target` and the package
    `__init__`s on its path, except those `importer` is already inside (they are running)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    inside = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return [m for m in chain if m in MODULES and m not in inside and m != importer]


def _group(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package root


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def test_the_graph_sees_the_package():
    assert f"{PACKAGE}.models.registry" in MODULES and f"{PACKAGE}.cli" in MODULES
    assert set(filter(None, map(_group, MODULES))) <= set(RANK) | {"data"}, "a new subpackage needs a RANK"


def _module_graph():
    """Module -> the package modules importing it runs, function-level (lazy) imports included."""
    graph = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            graph[module].update(_executed(module, target))
    return graph


def test_no_import_circle_even_through_lazy_imports():
    """Between any two modules, subpackages or files of one folder alike: the circles of
    models/base.py with models/features.py and of weights/checkpoint.py with
    weights/safetensors.py were lazy imports inside one folder."""
    assert _cycles(_module_graph()) == []


def test_the_graph_counts_lazy_imports():
    """`weights/checkpoint.py` reads .safetensors files; whether that import is at module level
    or inside a function, it is an arrow of the graph."""
    assert f"{PACKAGE}.weights.safetensors" in _module_graph()[f"{PACKAGE}.weights.checkpoint"]
    lazy = [(m, t) for m in MODULES for t, top_level, _ in _imports(m) if not top_level]
    assert lazy, "no function-level import found: the graph would not see a lazy circle"
    module, target = lazy[0]
    assert set(_executed(module, target)) <= _module_graph()[module]


def test_imports_run_one_way():
    wrong = []
    for module in sorted(MODULES):
        source = _group(module)
        if source is None:
            continue
        for target, top_level, line in _imports(module):
            group = _group(target)
            if RANK.get(group, ROOT_RANK) > RANK[source]:
                kind = "" if top_level else " (inside a function)"
                wrong.append(f"{module}:{line} imports {target}{kind}: {source} is below {group or 'the root'}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("group", ["errors", "layers", "weights", "models"])
def test_lower_layers_do_not_import_tensorflow_at_module_level(group):
    """TensorFlow-only code (tf.data, SavedModels) lives in training/ and tfhub/."""
    offenders = []
    for module in MODULES:
        if _group(module) != group:
            continue
        with open(MODULES[module][0]) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("tensorflow", "tensorflow_hub") for n in names):
                offenders.append(f"{module}:{node.lineno}")
    assert offenders == [], offenders


def test_the_checker_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
