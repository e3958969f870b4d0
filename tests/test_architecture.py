"""The architecture's rules (docs/architecture.md), read from the source with ``ast``:

- each layer imports only the layers below it (``MAY_IMPORT``);
- no import cycle between the apps' modules;
- only the gateway (and the webhook signature check) import stripe;
- no function of the apps is longer than 50 lines;
- every docstring of the apps opens with one summary line.

Each checker is also run on a planted violation, so a rule that stopped seeing anything fails.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("approvals", "config", "console", "devtools", "ledger", "marketplace", "payouts")
STRIPE_IMPORTERS = {
    Path("payouts/stripe_api/gateway.py"),
    Path("payouts/stripe_api/webhook_signature.py"),
}
LONGEST_FUNCTION = 50

# Where the whole service is put together; they may import any app.
COMPOSITION_ROOTS = (
    "config.settings",
    "config.urls",
    "config.wsgi",
    "config.asgi",
    "devtools",
    "console.apps",
    "approvals.apps",
    "ledger.apps",
    "marketplace.apps",
    "payouts.apps",
)
_BOOK_AND_ORDERS = {"config", "marketplace", "ledger"}
_TRANSFER_DOMAIN = {"payouts.models", "payouts.conf", "payouts.telemetry"}
# A module's layer is the longest prefix of its dotted name found here; it may import its own
# layer and the ones listed (the standard library and third parties are not rules of ours).
MAY_IMPORT: dict[str, set[str]] = {
    # The floor: settings helpers, the error vocabulary, money and durations. No app.
    "config": set(),
    "marketplace": {"config"},
    # Staff requests waiting for a second person; each app registers the actions it can run.
    "approvals": {"config"},
    "approvals.admin": {"config", "approvals", "marketplace.admin", "console.display"},
    "ledger": {"config", "marketplace", "approvals"},
    # Each app's admin module is the console's interface to that app.
    "marketplace.admin": {"config", "marketplace", "console.display", "console.stripe_links"},
    "ledger.admin": {
        "config",
        "approvals",
        "marketplace",
        "ledger",
        "console.display",
        "console.stripe_links",
    },
    # payouts, bottom up: settings, counters, the Stripe adapter, the state machine, the reads,
    # the wake-ups, the services, then the interfaces (HTTP, tasks, commands, admin).
    "payouts.conf": {"config"},
    "payouts.telemetry": set(),
    "payouts.stripe_api": {"config", "payouts.conf", "payouts.telemetry"},
    "payouts.models": {"config", "marketplace", "payouts.transfer"},
    "payouts.transfer": _BOOK_AND_ORDERS | {"payouts.models", "payouts.conf", "payouts.stripe_api"},
    "payouts.selectors": _BOOK_AND_ORDERS | _TRANSFER_DOMAIN | {"payouts.transfer"},
    "payouts.wakeups": {"config"},
    "payouts.concurrency": {"config"},
    "payouts.services": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {
        "payouts.stripe_api",
        "payouts.transfer",
        "payouts.selectors",
        "payouts.wakeups",
        "payouts.concurrency",
    },
    "payouts.http": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {
        "approvals",
        "payouts.audit",
        "payouts.services",
        "payouts.selectors",
        "payouts.transfer.actors",
        "payouts.transfer.transitions",
        "payouts.stripe_api.webhook_signature",
    },
    "payouts.tasks": {"config", "payouts.conf", "payouts.services"},
    "payouts.management": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {"payouts.services", "payouts.selectors", "payouts.transfer"},
    "payouts.admin": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {
        "approvals",
        "console",
        "marketplace.admin",
        "payouts.action_plans",
        "payouts.policy_admin",
        "payouts.services",
        "payouts.selectors",
        "payouts.transfer.actors",
        "payouts.transfer.transitions",
    },
    # The payout policy pages (imported by payouts.admin, so registered with it).
    "payouts.policy_admin": _BOOK_AND_ORDERS | _TRANSFER_DOMAIN | {"approvals", "payouts.services"},
    # What a staff money action would do, line by line, for the console's confirmation pages.
    "payouts.action_plans": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {"console.display", "payouts.services", "payouts.transfer.transitions"},
    # The staff actions payouts registers with the approvals app (run once approved).
    "payouts.approval_actions": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {"approvals", "payouts.services", "payouts.transfer.actors", "payouts.transfer.transitions"},
    # The audit export: every staff action and money move, read in time order.
    "payouts.audit": _BOOK_AND_ORDERS | _TRANSFER_DOMAIN | {"approvals"},
    # The console reads the apps (their selectors and models); the one thing it does itself is
    # record a second person's decision on a waiting request, through the approvals app.
    "console": _BOOK_AND_ORDERS
    | _TRANSFER_DOMAIN
    | {
        "approvals",
        "payouts.http.serializers",
        "payouts.selectors",
        "payouts.transfer.transitions",
    },
}


def module_name(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def application_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        path.relative_to(root)
        for app in APPS
        for path in (root / app).rglob("*.py")
        if "migrations" not in path.parts
    )


def imported_modules(source: str, *, module: str) -> set[str]:
    """Every module ``source`` imports, dotted and absolute (``from x import y`` gives both ``x``
    and ``x.y``, since ``y`` may be a module)."""
    package = module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


def layer_of(module: str) -> str | None:
    if any(_within(module, root) for root in COMPOSITION_ROOTS):
        return None
    matches = [layer for layer in MAY_IMPORT if _within(module, layer)]
    return max(matches, key=len) if matches else None


def layer_violations(modules: dict[str, str]) -> list[str]:
    """``"importer -> imported"`` for each import that crosses the layers the wrong way;
    ``modules`` maps dotted names to their source."""
    ours = tuple(sorted({name.split(".")[0] for name in modules}))
    found = []
    for module, source in sorted(modules.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        allowed = MAY_IMPORT[layer] | {layer}
        for imported in sorted(imported_modules(source, module=module)):
            # A bare app name is its empty package; its modules are checked one by one.
            if imported in ours or imported.split(".")[0] not in ours or imported not in modules:
                continue
            if not any(_within(imported, prefix) for prefix in allowed):
                found.append(f"{module} -> {imported}")
    return found


def import_cycles(modules: dict[str, str]) -> list[list[str]]:
    """The strongly connected groups of two or more modules in the import graph (Tarjan)."""
    graph = defaultdict(set)
    for module, source in modules.items():
        for imported in imported_modules(source, module=module):
            if imported in modules and imported != module:
                graph[module].add(imported)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(modules):
        if node not in index:
            visit(node)
    return cycles


def long_functions(source: str, *, limit: int = LONGEST_FUNCTION) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > limit
    ]


def docstrings_without_a_summary_line(source: str) -> list[int]:
    """Lines of docstrings whose first line is not a whole sentence on its own: a docstring is
    either one line, or a first line followed by a blank one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        docstring = ast.get_docstring(node, clean=False)
        if docstring is None:
            continue
        lines = docstring.strip("\n").splitlines()
        if len(lines) > 1 and lines[1].strip():
            found.append(node.body[0].lineno)
    return found


def the_tree() -> dict[str, str]:
    return {module_name(path): (ROOT / path).read_text() for path in application_files()}


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(the_tree()) == []


def test_every_application_module_has_a_layer_or_is_a_composition_root():
    unplaced = [
        module
        for module in the_tree()
        if layer_of(module) is None
        and not any(_within(module, root) for root in COMPOSITION_ROOTS)
        and module not in APPS
    ]
    assert unplaced == []


def test_the_apps_have_no_import_cycle():
    assert import_cycles(the_tree()) == []


def test_only_the_gateway_and_the_signature_check_import_stripe():
    importers = {
        path
        for path in application_files()
        if any(
            _within(m, "stripe")
            for m in imported_modules((ROOT / path).read_text(), module=module_name(path))
        )
    }
    assert importers == STRIPE_IMPORTERS


def test_no_function_of_the_apps_is_longer_than_fifty_lines():
    too_long = {
        str(path): found
        for path in application_files()
        if (found := long_functions((ROOT / path).read_text()))
    }
    assert too_long == {}


def test_every_docstring_opens_with_one_summary_line():
    without = {
        str(path): found
        for path in application_files()
        if (found := docstrings_without_a_summary_line((ROOT / path).read_text()))
    }
    assert without == {}


# The checkers, each on a planted violation.


@pytest.mark.parametrize(
    ("importer", "line", "imported"),
    [
        ("marketplace.services", "from payouts.models import SellerTransfer", "payouts.models"),
        ("ledger.services", "import payouts.services.refunds", "payouts.services.refunds"),
        (
            "payouts.stripe_api.gateway",
            "from payouts.transfer import moves",
            "payouts.transfer.moves",
        ),
        ("payouts.services.refunds", "from payouts.http import views", "payouts.http.views"),
        ("payouts.services.refunds", "from payouts import tasks", "payouts.tasks"),
        ("payouts.wakeups", "from payouts.tasks import reversals_drain", "payouts.tasks"),
        ("console.dashboard", "from payouts.services import refunds", "payouts.services.refunds"),
        ("config.errors", "from payouts.models import SellerTransfer", "payouts.models"),
    ],
)
def test_the_layer_rule_catches_a_planted_import(importer, line, imported):
    tree = dict.fromkeys(
        ["payouts.models", "payouts.services.refunds", "payouts.transfer.moves"], ""
    ) | dict.fromkeys(["payouts.http.views", "payouts.tasks"], "")
    tree[importer] = line + "\n"

    assert layer_violations(tree) == [f"{importer} -> {imported}"]


def test_the_layer_rule_lets_a_layer_import_the_ones_below_it():
    tree = {
        "payouts.services.refunds": "from payouts.transfer import moves\n",
        "payouts.transfer.moves": "from payouts.models import SellerTransfer\n",
        "payouts.models": "from marketplace.models import Order\n",
        "marketplace.models": "",
    }

    assert layer_violations(tree) == []


def test_the_cycle_check_catches_a_planted_cycle():
    tree = {
        "payouts.services.refunds": "from payouts import wakeups\n",
        "payouts.wakeups": "import payouts.tasks\n",
        "payouts.tasks": "from payouts.services.refunds import refund_apply\n",
        "payouts.models": "",
    }

    assert import_cycles(tree) == [["payouts.services.refunds", "payouts.tasks", "payouts.wakeups"]]


def test_the_length_check_catches_a_planted_long_function():
    body = "".join(f"    x{n} = {n}\n" for n in range(LONGEST_FUNCTION))
    source = f"def short():\n    pass\n\n\ndef planted():\n{body}"

    assert long_functions(source) == [("planted", LONGEST_FUNCTION + 1)]


def test_the_docstring_check_catches_a_summary_that_runs_on():
    source = '''def f():
    """A summary that runs on
    into a second line."""


def g():
    """One line.

    Then the rest."""
'''

    assert docstrings_without_a_summary_line(source) == [2]
