"""The documentation cannot drift from the code: the state diagrams are the transition table,
and every file the docs point at exists in the repository."""

import re
from pathlib import Path

import pytest

from payouts.transfer.transitions import ALLOWED_TRANSITIONS

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = [ROOT / "README.md", ROOT / "docs" / "states.md"]
_EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*(?::.*)?$")


def table_edges() -> set[tuple[str, str]]:
    """The transition table as the edges a diagram draws (moves to itself are not drawn)."""
    return {
        (from_status, to_status)
        for from_status, exits in ALLOWED_TRANSITIONS.items()
        for to_status in exits
        if to_status != from_status
    }


def diagram_edges(markdown: str) -> set[tuple[str, str]]:
    [diagram] = re.findall(r"```mermaid\n(.*?)```", markdown, flags=re.S)
    edges = set()
    for line in diagram.splitlines():
        found = _EDGE.match(line.replace("[*]", "START"))
        if found and "START" not in found.groups():
            edges.add(found.groups())
    return edges


@pytest.mark.parametrize("document", DIAGRAMS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_state_diagram_draws_exactly_the_transition_table(document):
    assert diagram_edges(document.read_text()) == table_edges()


def test_a_diagram_missing_an_edge_is_caught():
    drawn = "```mermaid\nstateDiagram-v2\n    pending --> completed: paid\n```\n"

    assert diagram_edges(drawn) != table_edges()


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_of_the_repository(document):
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text())
    local = [link for link in links if "://" not in link]

    missing = [link for link in local if not (document.parent / link).exists()]

    assert missing == []


def test_nothing_points_at_documents_outside_the_repository():
    # Built from parts so that this test does not find itself.
    outside = re.compile("|".join([r"\bS" + r"PEC\b", "S" + r"TYLE\.md"]))
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("config", "devtools", "marketplace", "payouts", "tests", "bench", "docs")
        for path in (ROOT / package).rglob("*")
        if path.suffix in {".py", ".md"} and outside.search(path.read_text())
    ]
    offenders += [
        name for name in ("README.md", "CHANGELOG.md") if outside.search((ROOT / name).read_text())
    ]

    assert offenders == []


APPS = ("approvals", "config", "console", "devtools", "ledger", "marketplace", "payouts")


def mapped_modules(markdown: str) -> set[str]:
    """The module paths the ``layout`` block of docs/architecture.md names: a line whose first
    word ends in ``/`` opens a folder (nested by indentation), one naming ``.py`` files puts
    them in the folder above it."""
    [block] = re.findall(r"```layout\n(.*?)```", markdown, flags=re.S)
    folders: list[tuple[int, str]] = []
    found = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        here = folders[-1][1] if folders else ""
        first = line.split()[0]
        if first.endswith("/"):
            folders.append((indent, here + first))
            continue
        for name in re.findall(r"[\w./]+\.py\b", line.strip().split("  ")[0]):
            found.add(here + name)
    return found


def modules_of_the_apps() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and path.name != "__init__.py"
    }


def test_the_architecture_map_names_every_module_of_the_apps_and_nothing_else():
    mapped = mapped_modules((ROOT / "docs" / "architecture.md").read_text())

    assert mapped == modules_of_the_apps()


def test_a_module_missing_from_the_map_is_caught():
    drawn = "```layout\npayouts/\n  transfer/\n    moves.py   the moves\n  tasks.py  tasks\n```\n"

    assert mapped_modules(drawn) == {"payouts/transfer/moves.py", "payouts/tasks.py"}
    assert mapped_modules(drawn) != modules_of_the_apps()
