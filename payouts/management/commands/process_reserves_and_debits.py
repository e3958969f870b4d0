"""Run the reserve release and account debit sweeps from a shell: once, or until nothing is left."""

import json
import time
from collections import Counter

from django.core.management.base import BaseCommand

from payouts.models import AccountDebit, DebitState, ReleaseState, ReserveRelease
from payouts.services.debits import debts_debit_due
from payouts.services.reserves import reserves_release_due


class Command(BaseCommand):
    help = (
        "Release due reserves and make due account debits once, or with --drain until a round "
        "finds nothing to do and no release or debit is pending."
    )

    def add_arguments(self, parser):
        parser.add_argument("--drain", action="store_true", help="repeat until none is left")
        parser.add_argument(
            "--max-seconds", type=float, default=600, help="stop draining after this long"
        )
        parser.add_argument(
            "--limit", type=int, default=None, help="rows each sweep attempts at most per round"
        )

    def handle(self, *args, drain, max_seconds, limit, **options):
        total: Counter[str] = Counter()
        deadline = time.monotonic() + max_seconds
        while True:
            done = Counter(
                {f"reserves:{k}": v for k, v in reserves_release_due(limit=limit).items()}
            )
            done.update({f"debits:{k}": v for k, v in debts_debit_due(limit=limit).items()})
            total.update(done)
            # A pending row may be leased by another worker (or one killed): wait for it too.
            if not drain or not (done or _pending()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stdout.write(json.dumps(dict(total), sort_keys=True))


def _pending() -> bool:
    """Whether a release or a debit is still pending (due now or later)."""
    return (
        ReserveRelease.objects.filter(state=ReleaseState.PENDING).exists()
        or AccountDebit.objects.filter(state=DebitState.PENDING).exists()
    )
