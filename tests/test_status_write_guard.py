"""The status-write guard (``tests/status_write_scanner.py``): the application writes a transfer's
status only through the manager, called only by the named moves; and the scanner does catch
every form of a direct write planted in code."""

from pathlib import Path

import pytest

from tests.status_write_scanner import scan_source, scan_tree

ROOT = Path(__file__).resolve().parent.parent
APPLICATION_PACKAGES = ("config", "marketplace", "payouts")


def test_no_code_outside_the_manager_writes_a_transfer_status_nor_outside_moves_calls_it():
    violations = scan_tree(ROOT, APPLICATION_PACKAGES)

    assert violations == [], "\n".join(map(str, violations))


PLANTED = [
    "transfer.status = 'completed'",
    "self.transfer.status = TransferStatus.REVERSED",
    "transfer.status, transfer.retry_count = 'failed', 1",
    "transfer.status: str = 'failed'",
    "transfer.status += ''",
    "setattr(transfer, 'status', 'reversed')",
    "SellerTransfer.objects.filter(pk=1).update(status='reversed')",
    "SellerTransfer.objects.filter(pk=1).update(**{'status': 'reversed'})",
    "SellerTransfer.objects.bulk_update(rows, ['status', 'retry_count'])",
    "SellerTransfer.objects.bulk_update(rows, fields=('status',))",
    "transfer.save(update_fields=['status'])",
    "cursor.execute('UPDATE payouts_sellertransfer SET status = %s WHERE id = %s', args)",
    "cursor.execute('update payouts_sellertransfer set retry_count = 1, status = %s', args)",
    "SellerTransfer.objects.transition(transfer, 'completed', caused_by='x')",
]


@pytest.mark.parametrize("line", PLANTED)
def test_the_scanner_catches_a_planted_violation_outside_the_payouts_package(line):
    violations = scan_source(f"def f():\n    {line}\n", Path("marketplace/planted.py"))

    assert len(violations) == 1
    assert violations[0].line == 2


def test_inside_payouts_any_status_write_counts_whatever_the_variable_is_called():
    violations = scan_source("row.status = 'reversed'\n", Path("payouts/services/x.py"))

    assert [v.what for v in violations] == ["assigns .status"]


def test_the_scanner_catches_a_violation_planted_in_a_real_tree(tmp_path):
    (tmp_path / "payouts" / "transfer").mkdir(parents=True)
    (tmp_path / "payouts" / "transfer" / "managers.py").write_text(
        "transfer.status = 'allowed here'\n"
    )
    (tmp_path / "payouts" / "worker.py").write_text("def go(t):\n    t.status = 'reversed'\n")

    violations = scan_tree(tmp_path, ("payouts",))

    assert [(str(v.path), v.line) for v in violations] == [("payouts/worker.py", 2)]


@pytest.mark.parametrize(
    "line",
    [
        "if transfer.status == 'completed': pass",
        "SellerTransfer.objects.create(status='pending', amount=1)",
        "SellerTransfer.objects.filter(status='failed').update(retry_count=0)",
        "order.status = 'paid'",
        "SQL = 'UPDATE payouts_sellertransfer SET next_retry_at = %s WHERE status = %s'",
    ],
)
def test_reads_creates_and_non_transfer_writes_outside_payouts_pass(line):
    assert scan_source(f"{line}\n", Path("marketplace/clean.py")) == []


def test_only_the_named_moves_may_call_transition():
    call = "SellerTransfer.objects.transition(transfer, 'completed', caused_by='x')\n"

    assert scan_source(call, Path("payouts/transfer/moves.py")) == []
    assert [v.what for v in scan_source(call, Path("payouts/services/x.py"))] == [
        "calls transition()"
    ]
