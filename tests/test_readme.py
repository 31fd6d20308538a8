"""The README and docs/ describe the tree as it is: the file table names every module of gptjax/ and
only files that exist, the layer picture matches tests/test_layers.py, and every path and link resolves."""
import pathlib
import re

from test_layers import LAYERS

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# a path of this repository written in prose or code: gptjax/..., scripts/..., not ~/gptjax/... or gs://.../runs
REPO_PATH = re.compile(r"(?<![\w/~.-])((?:gptjax|scripts|experiments|tests|docs)/[\w./-]*\w)")
NOT_FILES = {"experiments/nope.py"}  # docs/reliability.md shows what a missing experiment file prints
LINK = re.compile(r"\]\(([^)#\s]+)(?:#([^)]*))?\)")


def anchors(page: pathlib.Path) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def readme_table_files() -> list[str]:
    """The `.py` names in the first column of the README's module table, relative to gptjax/."""
    lines = README.read_text().splitlines()
    start = lines.index("| module | holds |")
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([\w/]+\.py)`", line.split("|")[1])
    return names


def package_modules() -> set[str]:
    return {p.relative_to(ROOT / "gptjax").as_posix() for p in (ROOT / "gptjax").rglob("*.py")
            if p.name != "__init__.py"}


def test_the_file_table_names_every_module_and_only_real_files():
    named = readme_table_files()
    missing = sorted(package_modules() - set(named))
    assert not missing, f"modules of gptjax/ missing from the README's file table: {missing}"
    absent = sorted(n for n in named if not (ROOT / "gptjax" / n).is_file())
    assert not absent, f"the README's file table names files that do not exist under gptjax/: {absent}"
    twice = sorted({n for n in named if named.count(n) > 1})
    assert not twice, f"named twice in the README's file table: {twice}"


def test_the_layer_picture_matches_the_layers_test_enforces():
    """Lines like ` 4   train/ ...` in the README: subpackages with a slash, base modules on layer 0."""
    drawn, base = {}, set()
    for line in README.read_text().splitlines():
        m = re.match(r"^\s*(\d)\s{2,}(.*)$", line)
        if not m:
            continue
        layer, rest = int(m.group(1)), m.group(2)
        if layer == 0:
            base |= set(rest.split())
        for sub in re.findall(r"\b(\w+)/", rest):
            drawn[sub] = layer
    assert drawn == LAYERS, f"README layers {drawn} != tests/test_layers.py LAYERS {LAYERS}"
    top = {p.stem for p in (ROOT / "gptjax").glob("*.py") if p.name != "__init__.py"}
    assert base == top, f"README layer 0 {sorted(base)} != modules at the top of gptjax/ {sorted(top)}"


def test_paths_and_links_in_the_readme_and_docs_exist():
    wrong = []
    for page in PAGES:
        text = page.read_text()
        for path in set(REPO_PATH.findall(text)):
            if path not in NOT_FILES and not (ROOT / path).exists():
                wrong.append(f"{page.relative_to(ROOT)}: {path}")
        for link, anchor in set(LINK.findall(text)):
            target = page.parent / link
            if "://" in link:
                continue
            if not target.exists():
                wrong.append(f"{page.relative_to(ROOT)}: link {link}")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                wrong.append(f"{page.relative_to(ROOT)}: link {link}#{anchor}")
    assert not wrong, "paths or links that do not resolve: " + ", ".join(sorted(wrong))


def test_the_readme_stays_a_front_door():
    text = README.read_text()
    for command in ("bash scripts/run.sh", "bash scripts/test.sh"):  # CI runs scripts/test.sh
        assert command in text, f"the README lost its quick-start command {command!r}"
    n = len(text.splitlines())
    assert n <= 250, f"README.md has {n} lines; move deep sections to docs/ (at most 250)"
