"""Every third-party package that gptjax/ and scripts/ import is installed by requirements.txt (pinned there or
pulled in by a pinned package), or by the optional extra's own requirements file. A package missing from them
works on a developer's machine, where something else installed it, and breaks on a user's fresh install."""
import ast
import importlib.metadata as md
import pathlib
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
# optional extras: imported only by the code paths that need them, installed from their own files
EXTRAS = {"torch": "requirements-interop.txt", "transformers": "requirements-interop.txt",
          "lm_eval": "requirements-lm-eval.txt"}


def imported_modules() -> set[str]:
    names = set()
    for path in [*ROOT.glob("gptjax/**/*.py"), *ROOT.glob("scripts/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {"gptjax"} | {p.stem for p in ROOT.glob("scripts/*.py")}  # scripts import their helpers by name
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def pinned(path: pathlib.Path) -> set[str]:
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            out |= pinned(path.parent / line[3:].strip())
        elif line:
            out.add(canonicalize_name(Requirement(line).name))
    return out


def with_dependencies(names: set[str]) -> set[str]:
    """`names` and every distribution they require on this Python, transitively (extras left out)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in map(Requirement, md.requires(name) or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_every_imported_package_is_installed_by_the_requirements_files():
    runtime = with_dependencies(pinned(ROOT / "requirements.txt"))
    owners = md.packages_distributions()
    missing = []
    for module in sorted(imported_modules()):
        dists = {canonicalize_name(d) for d in owners.get(module, [module])}
        extra = EXTRAS.get(module)
        allowed = with_dependencies(pinned(ROOT / extra)) if extra else runtime
        if not dists & allowed:
            missing.append(f"{module} (distribution {', '.join(sorted(dists))}; expected in {extra or 'requirements.txt'})")
    assert not missing, "imported but not installed by the requirements files: " + "; ".join(missing)
