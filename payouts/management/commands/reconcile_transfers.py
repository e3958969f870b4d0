"""Management command: reconcile seller transfers with Stripe.

Compare seller transfers with Stripe; report differences, and with --repair record what
Stripe already did and schedule any refund share a transfer missed. Never moves money itself."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from payouts.services.reconciliation import shares_recheck, transfers_compare_with_stripe


class Command(BaseCommand):
    help = "Compare our seller transfers with Stripe's (report only unless --repair)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--repair",
            action="store_true",
            help="record reversals seen at Stripe, and schedule refund shares a transfer missed",
        )
        parser.add_argument(
            "--days", type=int, default=None, help="only transfers changed in the last N days"
        )

    def handle(self, *args, repair, days, **options):
        since = timedelta(days=days) if days else None
        if repair:
            scheduled = shares_recheck(since=since)
            self.stdout.write(f"{scheduled} missed refund share(s) scheduled for reversal")
        differences = transfers_compare_with_stripe(repair=repair, since=since)
        for difference in differences:
            self.stdout.write(str(difference))
        self.stdout.write(f"{len(differences)} difference(s)")
