"""Development only: pay a seller out to their bank now, in the local Stripe sandbox.

The sandbox pays the seller's connected account out as Stripe does on the account's schedule. The
sandbox then sends the signed ``payout.*`` events to the Connect endpoint, and the service reads
what the payout carried. Refuses to run with DEBUG off or without the sandbox."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketplace.models import Seller
from stripe_sandbox.testing import SandboxControl, SandboxControlError


class Command(BaseCommand):
    help = "Pay a seller's sandbox balance out to their bank (all of it by default)."

    def add_arguments(self, parser):
        parser.add_argument("seller_id", type=int)
        parser.add_argument("--amount", type=int, help="minor units (default: all available)")
        parser.add_argument("--currency", help="default: the account's default currency")
        parser.add_argument(
            "--fail",
            metavar="FAILURE_CODE",
            help="the bank refuses it (account_closed, no_account, ...): payout.failed",
        )

    def handle(self, *args, seller_id, amount, currency, fail, **options):
        if not settings.DEBUG or not getattr(settings, "STRIPE_USES_LOCAL_SANDBOX", False):
            raise CommandError("sandbox_payout only runs in development, against the sandbox")
        seller = Seller.objects.filter(pk=seller_id).first()
        if seller is None or not seller.stripe_account_id:
            raise CommandError(f"seller {seller_id} does not exist or has no connected account")
        try:
            payout = SandboxControl(settings.SANDBOX_URL).simulate_payout(
                seller.stripe_account_id, amount, currency, failure_code=fail
            )
        except (OSError, SandboxControlError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{payout['id']}: {payout['amount']} {payout['currency']} {payout['status']}"
            + (f" ({payout['failure_code']})" if payout["failure_code"] else "")
        )
