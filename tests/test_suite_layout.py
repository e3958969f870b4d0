"""The suite's own layout: test modules share code only through ``tests/builders.py`` (scenario
builders), ``tests/factories.py`` (rows) and ``tests/conftest.py`` (fixtures), never by importing
one another."""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def imports_of_test_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import statement in ``source`` that brings in a test module
    (``tests.test_…`` or ``test_…``; absolute or relative; ``import`` or ``from``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            # `from tests import test_x` and `from . import test_x` name the module last.
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        named = [module for module in modules if _is_test_module(module)]
        if named:
            found.append((node.lineno, named[0]))
    return found


def _is_test_module(dotted: str) -> bool:
    """A ``test_…`` module of this suite: in the ``tests`` package, relative to it, or on its
    own at the top (pytest's rootdir-relative imports)."""
    parts = dotted.lstrip(".").split(".")
    if dotted.startswith(".") or parts[0] == "tests":
        return any(part.startswith("test_") for part in parts)
    return parts[0].startswith("test_")


def test_no_test_module_imports_another_test_module():
    offenders = [
        f"{path.name}:{line}: imports {module}"
        for path in sorted(TESTS.glob("*.py"))
        for line, module in imports_of_test_modules(path.read_text())
    ]

    assert offenders == [], "share it through tests/builders.py instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "planted",
    [
        "from tests.test_paying_sellers import paid_intent",
        "import tests.test_paying_sellers",
        "import tests.test_paying_sellers as paying",
        "from tests import test_paying_sellers",
        "from .test_paying_sellers import paid_intent",
        "from . import test_paying_sellers",
        "from test_paying_sellers import paid_intent",
        "def helper():\n    from tests.test_paying_sellers import paid_intent",
    ],
)
def test_the_scanner_catches_a_planted_import_of_a_test_module(planted):
    source = f'"""A module."""\n\nimport pytest\n{planted}\n'
    planted_at = next(
        number
        for number, text in enumerate(source.splitlines(), start=1)
        if "test_paying_sellers" in text
    )

    assert [line for line, _ in imports_of_test_modules(source)] == [planted_at]


@pytest.mark.parametrize(
    "allowed",
    [
        "from tests.builders import paid_order",
        "from tests.factories import SellerFactory",
        "from tests.status_write_scanner import scan_source",
        "import tests.conftest",
        "from payouts.services.transfers import transfers_send_due",
        "from django.test import TestCase",
        "from somelibrary import test_helpers",
    ],
)
def test_the_scanner_lets_shared_modules_be_imported(allowed):
    assert imports_of_test_modules(f"{allowed}\n") == []
