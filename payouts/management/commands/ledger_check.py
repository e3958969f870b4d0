"""Management command: run the ledger check now and print its breaks.

Check the book against itself, the seller transfer rows and Stripe; store and print every
break, one line each; exit 1 when there is any."""

import sys
import time
from datetime import timedelta

from django.core.management.base import BaseCommand

from payouts.services.ledger_check import ledger_check


class Command(BaseCommand):
    help = "Compare the ledger with itself, the transfer rows and Stripe (exit 1 on any break)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, help="per-transfer checks only for transfers changed in N days"
        )
        parser.add_argument(
            "--no-stripe", action="store_true", help="skip reading each transfer at Stripe"
        )
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="only what changed since the last clean run (a full run when there is none)",
        )

    def handle(self, *args, days, no_stripe, incremental, **options):
        started = time.monotonic()
        since = timedelta(days=days) if days else None
        run, breaks = ledger_check(stripe=not no_stripe, since=since, incremental=incremental)
        for found in breaks:
            self.stdout.write(str(found))
        self.stdout.write(
            f"check {run.pk}{' (incremental)' if incremental else ''}: "
            f"{run.transfers_checked} transfers, {len(breaks)} break(s) "
            f"in {time.monotonic() - started:.1f} s"
        )
        if breaks:
            sys.exit(1)
