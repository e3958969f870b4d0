"""The Stripe webhook inbox: store every event once, then process it.

Processing is database-only and runs right away; anything that needs Stripe (sending transfers,
fetching a charge's refunds) is handed to Celery after commit, so the HTTP answer never waits on
Stripe. Each event's row is locked while it is processed, so two simultaneous deliveries of one
event have one effect. A failing handler changes nothing (savepoint) and its error is recorded on
the row for a replay (admin action, ``manage.py replay_webhook_events``).
"""

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from marketplace.selectors import seller_for_connected_account
from marketplace.services import OrderMismatch, order_find_for_payment
from payouts.models import WEBHOOK_DONE_OUTCOMES, SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.services.bank_payouts import payout_record
from payouts.services.disputes import DisputeNotApplicable, dispute_apply
from payouts.services.holds import seller_account_updated, seller_deauthorized
from payouts.services.reconciliation import transfer_record_stripe_reversals
from payouts.services.refunds import RefundCurrencyMismatch, UnknownRefundOrder, refund_apply
from payouts.services.transfers import order_payment_record
from payouts.stripe_api.gateway import (
    account_from_stripe,
    dispute_from_stripe,
    minor_units,
    payout_from_stripe,
    refund_from_stripe,
)
from payouts.telemetry import event_refused
from payouts.transfer.actors import Actor
from payouts.wakeups import sync_charge_refunds_after_commit

logger = logging.getLogger(__name__)


class WebhookRejected(Exception):
    """The event is well-formed but cannot be applied (unknown order, amounts that disagree)."""


class EventNotOurs(Exception):
    """The event is about something that is not ours.

    A connected account that is none of our sellers, say: stored as ``ignored``, nothing applied,
    nothing to replay."""


def webhook_event_ingest(*, payload: dict, connect: bool = False) -> WebhookEvent:
    """Store a Stripe event in the inbox and process it, once.

    Store ``payload`` in the inbox unless its event id is there already, then process it
    unless an earlier delivery already did. ``connect``: it came from the Connect endpoint (a
    connected account's event, carrying its ``account``)."""
    account = str(payload.get("account") or "") if connect else ""
    fields = {"stripe_event_id": payload["id"], "type": payload["type"], "account": account}
    if payload["type"] not in _handlers(account):
        # Most of what Stripe sends is not ours to act on: one INSERT, already ignored.
        now = timezone.now()
        event = WebhookEvent(
            **fields,
            payload=payload,
            outcome=WebhookOutcome.IGNORED,
            processed_at=now,
            attempts=1,
        )
        WebhookEvent.objects.bulk_create([event], ignore_conflicts=True)
        return event
    WebhookEvent.objects.bulk_create(
        [WebhookEvent(**fields, payload=payload)], ignore_conflicts=True
    )
    event = WebhookEvent.objects.get(stripe_event_id=payload["id"])
    if event.outcome in WEBHOOK_DONE_OUTCOMES:
        return event
    return webhook_event_process(event_id=event.pk)


def webhook_event_process(*, event_id: int, force: bool = False) -> WebhookEvent:
    """Process one stored event, or replay it.

    Process one stored event (again, for a replay). Already processed or ignored events are
    left alone unless ``force`` (every handler is idempotent)."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_id)
        if event.outcome in WEBHOOK_DONE_OUTCOMES and not force:
            return event
        handler = _handlers(event.account).get(event.type)
        event.attempts += 1
        event.processed_at = timezone.now()
        if handler is None:
            event.outcome, event.error = WebhookOutcome.IGNORED, ""
        else:
            try:
                with transaction.atomic():
                    handler(event)
            except EventNotOurs as exc:
                event.outcome, event.error = WebhookOutcome.IGNORED, ""
                logger.info(
                    "webhook event not ours; ignored",
                    extra={"stripe_event_id": event.stripe_event_id, "reason": str(exc)},
                )
            except Exception as exc:  # noqa: BLE001 - recorded on the row for a replay
                event.outcome, event.error = WebhookOutcome.FAILED, f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "webhook event failed",
                    extra={"stripe_event_id": event.stripe_event_id, "error": event.error},
                )
            else:
                event.outcome, event.error = WebhookOutcome.PROCESSED, ""
        event.save(update_fields=["outcome", "error", "attempts", "processed_at"])
    return event


# An event still `received` after this long was stored by a process that died before processing
# it (or whose processing never ran): the sweep processes it.
UNPROCESSED_AFTER = timedelta(minutes=1)


def webhook_events_process_stranded(*, limit: int = 500) -> dict[str, int]:
    """Process stored events whose processing never ran. Returns counts per outcome."""
    stranded = WebhookEvent.objects.filter(
        outcome=WebhookOutcome.RECEIVED, received_at__lte=timezone.now() - UNPROCESSED_AFTER
    ).order_by("received_at")
    outcomes: Counter[str] = Counter()
    for event_id in stranded.values_list("pk", flat=True)[:limit]:
        outcomes[webhook_event_process(event_id=event_id).outcome] += 1
    return dict(outcomes)


def _object(event: WebhookEvent) -> dict:
    return event.payload["data"]["object"]


def _actor(event: WebhookEvent) -> Actor:
    return Actor.webhook(event.stripe_event_id)


def _payment_intent_succeeded(event: WebhookEvent) -> None:
    intent = _object(event)
    order = order_find_for_payment(
        order_id=(intent.get("metadata") or {}).get("order_id"), payment_intent_id=intent["id"]
    )
    if order is None:
        raise WebhookRejected(f"no order for payment intent {intent['id']}")
    charge = intent.get("latest_charge") or ""
    if isinstance(charge, dict):
        charge = charge.get("id", "")
    try:
        order_payment_record(
            order=order,
            amount=minor_units(intent.get("amount_received") or intent["amount"]),
            currency=intent["currency"],
            payment_intent_id=intent["id"],
            charge_id=charge,
        )
    except OrderMismatch as exc:
        raise WebhookRejected(str(exc)) from exc


def _refund_changed(event: WebhookEvent) -> None:
    refund = refund_from_stripe(_object(event))
    status = "failed" if event.type == "refund.failed" else None
    try:
        refund_apply(refund=refund, status=status, actor=_actor(event))
    except (UnknownRefundOrder, RefundCurrencyMismatch) as exc:
        raise WebhookRejected(str(exc)) from exc


def _charge_refunded(event: WebhookEvent) -> None:
    # The charge carries totals, not the refunds: fetch them (outside this request) and apply
    # only those we have not seen, never the totals.
    charge_id = _object(event)["id"]
    sync_charge_refunds_after_commit(charge_id=charge_id)


def _transfer_reversed(event: WebhookEvent) -> None:
    stripe_transfer = _object(event)
    transfer = SellerTransfer.objects.filter(stripe_transfer_id=stripe_transfer["id"]).first()
    if transfer is None:
        raise WebhookRejected(f"no seller transfer for {stripe_transfer['id']}")
    currency = str(stripe_transfer.get("currency") or transfer.currency).lower()
    if currency != transfer.currency:
        event_refused(reason="transfer_currency")
        logger.error(
            "transfer event in another currency than its transfer; not applied",
            extra={"transfer_id": transfer.pk, "currency": currency},
        )
        raise WebhookRejected(
            f"{stripe_transfer['id']} is in {currency}, seller transfer {transfer.pk} in "
            f"{transfer.currency}: not applied, nothing recorded"
        )
    transfer_record_stripe_reversals(
        transfer_id=transfer.pk,
        stripe_amount_reversed=minor_units(
            stripe_transfer.get("amount_reversed") or 0, field="amount_reversed"
        ),
        actor=_actor(event),
    )


def _dispute_changed(event: WebhookEvent) -> None:
    try:
        dispute_apply(dispute=dispute_from_stripe(_object(event)), actor=_actor(event))
    except DisputeNotApplicable as exc:
        raise WebhookRejected(str(exc)) from exc


def _created(event: WebhookEvent) -> datetime | None:
    """When Stripe made the event (not when it was delivered)."""
    created = event.payload.get("created")
    return datetime.fromtimestamp(int(created), tz=UTC) if created else None


def _account_updated(event: WebhookEvent) -> None:
    seller_account_updated(
        account=account_from_stripe(_object(event)),
        actor=_actor(event),
        event_created=_created(event),
    )


def _account_deauthorized(event: WebhookEvent) -> None:
    seller_deauthorized(
        account_id=event.account, actor=_actor(event), event_created=_created(event)
    )


def _payout_changed(event: WebhookEvent) -> None:
    seller = seller_for_connected_account(account_id=event.account)
    if seller is None:
        raise EventNotOurs(f"{event.account} is not a seller's connected account")
    payout_record(
        seller=seller, account_id=event.account, payout=payout_from_stripe(_object(event))
    )


def _handlers(account: str) -> dict[str, Callable[[WebhookEvent], None]]:
    """The handlers for the events of a connected account, or for the platform's own.

    A connected account's events (stored with their account) and the platform's own are
    told apart: neither endpoint can trigger the other's handlers."""
    return CONNECT_HANDLERS if account else HANDLERS


CONNECT_HANDLERS: dict[str, Callable[[WebhookEvent], None]] = {
    "account.updated": _account_updated,
    "account.application.deauthorized": _account_deauthorized,
    "payout.created": _payout_changed,
    "payout.updated": _payout_changed,
    "payout.paid": _payout_changed,
    "payout.failed": _payout_changed,
    "payout.canceled": _payout_changed,
}

HANDLERS: dict[str, Callable[[WebhookEvent], None]] = {
    "transfer.reversed": _transfer_reversed,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "refund.created": _refund_changed,
    "refund.updated": _refund_changed,
    "refund.failed": _refund_changed,
    "charge.refund.updated": _refund_changed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_changed,
    "charge.dispute.updated": _dispute_changed,
    "charge.dispute.funds_withdrawn": _dispute_changed,
    "charge.dispute.funds_reinstated": _dispute_changed,
    "charge.dispute.closed": _dispute_changed,
}
