"""Compare our seller transfers with Stripe's and report (or repair) differences.

Repairs only ever record what Stripe already did (``transfer_reconcile``); nothing here moves
money. Differences that a repair cannot settle (Stripe reports less reversed than we recorded, a
different amount, a transfer missing at Stripe) are reported for staff.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from payouts.gateway import GatewayError, StripeGateway, TransferNotFound, get_gateway
from payouts.models import SellerTransfer
from payouts.services.reversals import PAID, transfer_reconcile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Difference:
    transfer_id: int
    stripe_transfer_id: str
    problem: str
    repaired: bool = False

    def __str__(self) -> str:
        state = "repaired" if self.repaired else "needs review"
        return f"transfer {self.transfer_id} ({self.stripe_transfer_id}): {self.problem} [{state}]"


def transfers_reconcile_with_stripe(
    *, repair: bool, since: timedelta | None = None, gateway: StripeGateway | None = None
) -> list[Difference]:
    gateway = gateway or get_gateway()
    rows = SellerTransfer.objects.exclude(stripe_transfer_id="").filter(status__in=PAID)
    if since is not None:
        rows = rows.filter(updated_at__gte=timezone.now() - since)
    differences = []
    for row in rows.order_by("pk").iterator():
        found = _compare(row, gateway=gateway, repair=repair)
        if found is not None:
            logger.warning(
                "reconciliation difference", extra={"transfer_id": row.pk, "problem": found.problem}
            )
            differences.append(found)
    return differences


def _compare(row: SellerTransfer, *, gateway: StripeGateway, repair: bool) -> Difference | None:
    def differs(problem: str, repaired: bool = False) -> Difference:
        return Difference(row.pk, row.stripe_transfer_id, problem, repaired)

    try:
        at_stripe = gateway.retrieve_transfer(row.stripe_transfer_id)
    except TransferNotFound:
        return differs("missing at Stripe")
    except GatewayError as error:
        return differs(f"could not be read: {error.describe()}")
    if at_stripe.amount != row.amount:
        return differs(f"amount {row.amount} here, {at_stripe.amount} at Stripe")
    if at_stripe.amount_reversed == row.amount_reversed:
        return None
    problem = f"amount_reversed {row.amount_reversed} here, {at_stripe.amount_reversed} at Stripe"
    if not repair or at_stripe.amount_reversed < row.amount_reversed:
        return differs(problem)
    outcome = transfer_reconcile(
        transfer=row,
        stripe_amount_reversed=at_stripe.amount_reversed,
        caused_by="worker:reconcile_transfers",
    )
    return differs(problem, repaired=outcome == "updated")
