"""Static guard: a seller transfer's status changes only in ``SellerTransferManager.transition``,
and only the named moves of ``payouts/transfer/moves.py`` call it.

It walks the AST of the application packages and reports every direct status write outside
``payouts/transfer/managers.py``: ``x.status = …`` (plain, augmented, annotated or tuple targets),
``setattr(x, "status", …)``, ``.update(status=…)`` (also through ``**{"status": …}``),
``.bulk_update(…, ["status", …])``, ``.save(update_fields=[…"status"…])`` and raw SQL that
updates ``payouts_sellertransfer``'s status. In ``payouts`` (which owns transfers and hands
order and refund changes to ``marketplace`` services) every such write counts; elsewhere only
writes whose expression mentions a transfer do, since the AST carries no types. Any call of a
``.transition(…)`` method outside ``payouts/transfer/moves.py`` counts too: every edge has a
name there.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

TRANSFER_PACKAGE = "payouts"
ALLOWED_FILES = {Path("payouts/transfer/managers.py")}
MOVES = Path("payouts/transfer/moves.py")


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _mentions_transfer(node: ast.AST) -> bool:
    return any(
        "transfer" in (getattr(n, "id", None) or getattr(n, "attr", None) or "").lower()
        for n in ast.walk(node)
    )


def _names_status(node: ast.AST | None) -> bool:
    """A literal "status", or a list/tuple/set literal containing it."""
    if isinstance(node, ast.Constant):
        return node.value == "status"
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(_names_status(element) for element in node.elts)
    return False


def _assigned_targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    else:
        return []
    flat: list[ast.AST] = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        else:
            flat.append(target)
    return flat


def _status_write(node: ast.AST) -> tuple[str, ast.AST] | None:
    """If ``node`` writes a status, return a description and the expression written to."""
    for target in _assigned_targets(node):
        if isinstance(target, ast.Attribute) and target.attr == "status":
            return "assigns .status", target.value
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    is_setattr = isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) >= 2
    if is_setattr and _names_status(node.args[1]):
        return 'setattr(…, "status", …)', node.args[0]
    if not isinstance(func, ast.Attribute):
        return None
    keywords = {k.arg: k.value for k in node.keywords}
    if func.attr == "update":
        if "status" in keywords:
            return "update(status=…)", func.value
        for unpacked in (k.value for k in node.keywords if k.arg is None):
            if isinstance(unpacked, ast.Dict) and any(_names_status(k) for k in unpacked.keys):
                return "update(**{'status': …})", func.value
    if func.attr == "bulk_update":
        fields = keywords.get("fields", node.args[1] if len(node.args) > 1 else None)
        if _names_status(fields):
            return 'bulk_update(…, ["status"])', func.value
    if func.attr == "save" and _names_status(keywords.get("update_fields")):
        return 'save(update_fields=["status"])', func.value
    return None


_SQL_SET_STATUS = re.compile(r"update payouts_sellertransfer\s+set\s+(?:(?!\bwhere\b).)*\bstatus\b")


def _raw_sql_status_write(node: ast.AST) -> bool:
    """SQL text that updates the transfer table with ``status`` in its SET list (a WHERE on the
    status is only a read)."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    sql = " ".join(node.value.lower().split())
    return _SQL_SET_STATUS.search(sql) is not None


def _calls_transition(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "transition"
    )


def scan_source(source: str, relative_path: Path) -> list[Violation]:
    tree = ast.parse(source, filename=str(relative_path))
    in_transfer_package = relative_path.parts[0] == TRANSFER_PACKAGE
    violations = []
    for node in ast.walk(tree):
        if relative_path != MOVES and _calls_transition(node):
            violations.append(Violation(relative_path, node.lineno, "calls transition()"))
            continue
        found = _status_write(node)
        if found is not None:
            what, receiver = found
            if in_transfer_package or _mentions_transfer(receiver) or _mentions_transfer(node):
                violations.append(Violation(relative_path, node.lineno, what))
        elif _raw_sql_status_write(node):
            violations.append(Violation(relative_path, node.lineno, "raw SQL status update"))
    return violations


def scan_tree(root: Path, packages: tuple[str, ...]) -> list[Violation]:
    violations = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative in ALLOWED_FILES or "migrations" in relative.parts:
                continue
            violations.extend(scan_source(path.read_text(), relative))
    return violations
