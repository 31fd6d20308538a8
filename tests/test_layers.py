"""The package's shape: subpackages import only downward, no cycles, config loads no framework,
and no module or function grows past what a reader takes in at once."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gptjax"
# layer of each subpackage (top-level modules of gptjax/ are the base, layer 0); a module may import
# its own subpackage and any lower layer, never a higher one or another subpackage of its own layer
LAYERS = {"config": 1, "parallel": 2, "model": 3, "data": 3, "train": 4, "tasks": 5, "convert": 5, "science": 5}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def imports_of(path: pathlib.Path) -> set[str]:
    """Every gptjax module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gptjax")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gptjax"):
            for a in node.names:  # `from gptjax.model import flops` imports the module gptjax.model.flops
                sub = f"{node.module}.{a.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_every_subpackage_has_a_layer():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS)


def test_no_subpackage_imports_upward_or_sideways():
    wrong = []
    for module, deps in GRAPH.items():
        here = package_of(module)
        for dep in deps:
            there = package_of(dep)
            if there != here and LAYERS.get(there, 0) >= LAYERS.get(here, 0):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports against the layers: " + ", ".join(sorted(wrong))


def test_no_import_cycles():
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(GRAPH[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("gptjax.config")))
def test_config_modules_load_no_framework_data_or_model_code(module):
    code = (f"import sys; import {module}; "
            "print(sorted({m.split('.')[0] if not m.startswith('gptjax.') else '.'.join(m.split('.')[:2]) "
            "for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(out.stdout.strip()))
    heavy = {"jax", "jaxlib", "flax", "optax", "orbax", "numpy", "tensorflow_datasets", "grain", "sentencepiece",
             "gptjax.data", "gptjax.model", "gptjax.train", "gptjax.parallel"}
    assert not loaded & heavy, f"importing {module} loads {sorted(loaded & heavy)}"


def test_modules_and_functions_stay_small():
    long = []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, f"over {MAX_MODULE_LINES} lines a module / {MAX_FUNCTION_LINES} a function: " + ", ".join(long)


def test_scripts_hold_no_logic():
    """A script parses its arguments and makes one call into gptjax: no functions of its own past main."""
    fat = []
    for path in sorted((ROOT / "scripts").glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in ("main", "parse_args")]
        if funcs or len(path.read_text().splitlines()) > 120:
            fat.append(f"{path.name}: {funcs or 'long'}")
    assert not fat, "logic in scripts/: " + ", ".join(fat)
