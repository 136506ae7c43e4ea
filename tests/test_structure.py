"""The library's shape: no import cycles, and no function too long to read without a written reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "workflow" / "tokenprune"
MAX_FUNCTION_LINES = 60
# Functions allowed past the limit, each with the reason it reads better whole.
LONG_FUNCTIONS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(tree: ast.Module, known: set[str]) -> set[str]:
    """Library modules a module imports, at the top or inside functions, but not under ``if TYPE_CHECKING``."""
    type_checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for child in block.body
        for node in ast.walk(child)
    }
    targets = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name in known:
                targets.add(name)
                break
    return targets


def test_the_library_has_no_import_cycle() -> None:
    modules = library_modules()
    graph = {name: imported_modules(tree, set(modules)) - {name} for name, tree in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            assert state.get(target) != "open", "import cycle: " + " -> ".join([*path, name, target])
            if target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function, without its docstring."""
    first = function.body[0]
    docstring = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    skipped = first.end_lineno - first.lineno + 1 if docstring else 0
    return function.end_lineno - function.lineno + 1 - skipped


def test_no_function_is_longer_than_the_limit_without_a_reason() -> None:
    long = {}
    for name, tree in library_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > MAX_FUNCTION_LINES:
                long[f"{name}.{node.name}"] = code_lines(node)
    unexplained = {name: lines for name, lines in long.items() if name not in LONG_FUNCTIONS}
    assert not unexplained, f"split these into named steps, or give the reason in LONG_FUNCTIONS: {unexplained}"
    assert not set(LONG_FUNCTIONS) - set(long), "LONG_FUNCTIONS names functions that are no longer long"


def test_the_architecture_layout_names_every_library_module_and_top_level_folder() -> None:
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = architecture.split("## Layout", 1)[1].split("\n## ", 1)[0]
    modules = {path.name for path in PACKAGE.rglob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    rules = {path.name for path in (REPO / "workflow" / "rules").glob("*.smk")}
    folders = {f"{path.name}/" for path in REPO.iterdir() if path.is_dir() and not path.name.startswith(".")}
    folders -= {"results/", "resources/", "logs/", "build/", "workflow/"}  # written by runs, or the tree's own root
    missing = sorted(name for name in modules | rules | folders if name not in layout)
    assert not missing, f"docs/architecture.md's Layout section does not name {missing}"


def test_the_readme_is_short_and_opens_on_the_set_up_and_the_findings() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(readme) <= 300
    first_screen = "\n".join(readme[:60])
    assert "## Set-up" in first_screen and "## Findings in brief" in first_screen


def markdown_documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "benchmarks" / "README.md"]


def test_every_relative_link_of_the_docs_names_a_file_that_exists() -> None:
    broken = []
    for document in markdown_documents():
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8")):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            if not (document.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{document.relative_to(REPO)}: {target}")
    assert broken == []


#: A block of a document copied verbatim from a file a run wrote: ``<!-- copied from PATH -->``, the text, ``<!-- end of copy -->``.
COPIED_BLOCK = re.compile(r"<!-- copied from (?P<source>\S+) -->\n(?P<text>.*?)<!-- end of copy -->", re.DOTALL)


def test_tables_the_docs_copy_from_a_run_equal_the_files_they_name() -> None:
    """Numbers in the docs come from a run: each copied block is its source file, character for character."""
    stale = []
    for document in markdown_documents():
        for block in COPIED_BLOCK.finditer(document.read_text(encoding="utf-8")):
            source = REPO / block["source"]
            if not source.is_file() or source.read_text(encoding="utf-8") != block["text"]:
                stale.append(f"{document.relative_to(REPO)}: {block['source']}")
    assert stale == []


def test_every_library_module_declares_all_of_its_public_names() -> None:
    """``__all__`` in every module, naming exactly its public top-level functions, classes and constants."""
    undeclared = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = None
        defined = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                declared = set(ast.literal_eval(node.value))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            else:
                defined |= {target.id for target in targets if isinstance(target, ast.Name)}
        public = {name for name in defined if not name.startswith("_") and name != "log"}
        if declared is None or not public <= declared:
            undeclared[module_name(path)] = sorted(public - (declared or set()))
    assert undeclared == {}
