"""The layout's rules (docs/architecture.md): `marketplace` imports neither `payouts` nor
`ledger` nor `approvals`, `ledger` never imports `payouts`, `approvals` imports neither `ledger`
nor `payouts` (they register their actions in it); only the gateway (and the webhook signature
check) import stripe."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRIPE_IMPORTERS = {
    Path("payouts/stripe_api/gateway.py"),
    Path("payouts/stripe_api/webhook_signature.py"),
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def application_files():
    for package in ("approvals", "config", "devtools", "ledger", "marketplace", "payouts"):
        yield from (p.relative_to(ROOT) for p in (ROOT / package).rglob("*.py"))


def importers_of(package: str, *, within: str) -> list[str]:
    return [
        str(path)
        for path in application_files()
        if path.parts[0] == within
        and any(m == package or m.startswith(f"{package}.") for m in imported_modules(ROOT / path))
    ]


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("marketplace", "payouts"),
        ("marketplace", "ledger"),
        ("marketplace", "approvals"),
        ("ledger", "payouts"),
        ("approvals", "ledger"),
        ("approvals", "payouts"),
    ],
)
def test_a_lower_app_never_imports_a_higher_one(lower, upper):
    assert importers_of(upper, within=lower) == []


def test_only_the_gateway_and_the_signature_check_import_stripe():
    importers = {
        path
        for path in application_files()
        if any(m == "stripe" or m.startswith("stripe.") for m in imported_modules(ROOT / path))
    }
    assert importers == STRIPE_IMPORTERS
