"""Read sellers' bank payouts again at Stripe.

The ones named, a seller's, or every paid one never read (what beat's sweep does)."""

from django.core.management.base import BaseCommand, CommandError

from payouts.models import Payout, PayoutStatus
from payouts.services.bank_payouts import payout_reconcile


class Command(BaseCommand):
    help = "Read what sellers' bank payouts carried at Stripe (default: paid ones never read)."

    def add_arguments(self, parser):
        parser.add_argument("payout_ids", nargs="*", help="Stripe payout ids (po_…)")
        parser.add_argument("--seller", type=int, help="every automatic payout of this seller")

    def handle(self, *args, payout_ids, seller, **options):
        payouts = Payout.objects.order_by("pk")
        if payout_ids:
            payouts = payouts.filter(stripe_payout_id__in=payout_ids)
            missing = set(payout_ids) - set(payouts.values_list("stripe_payout_id", flat=True))
            if missing:
                raise CommandError(f"unknown payouts: {', '.join(sorted(missing))}")
        elif seller is not None:
            payouts = payouts.filter(seller_id=seller, automatic=True)
        else:
            payouts = payouts.filter(
                status=PayoutStatus.PAID, automatic=True, reconciled_at__isnull=True
            )
        for pk in payouts.values_list("pk", flat=True):
            result = payout_reconcile(payout_id=pk)
            payout = result.payout
            self.stdout.write(
                f"{payout.stripe_payout_id}: {result.outcome}, {result.calls} call(s), "
                f"{result.lines} line(s), {result.unmatched} unmatched, "
                f"lines {payout.items_total} of {payout.amount} {payout.currency}"
                + (f" ({payout.reconcile_error})" if payout.reconcile_error else "")
            )
