"""Recording a failed Stripe attempt: the pinned backoff rule of SPEC §7.2, shared by the
transfer sender and the reversal worker."""

import logging
from datetime import datetime

from config.payouts_config import RetryPolicy
from payouts.gateway import GatewayError, StripeTransientError
from payouts.idempotency import key_after_failure
from payouts.models import SellerTransfer
from payouts.transitions import TransferStatus

logger = logging.getLogger(__name__)


def record_retryable_failure(
    transfer: SellerTransfer,
    *,
    message: str,
    error: GatewayError | None,
    policy: RetryPolicy,
    retry_status: str,
    key_field: str,
    key: str,
    now: datetime,
    caused_by: str,
    may_give_up: bool = True,
    user=None,
) -> str:
    """Schedule the next attempt (``retry_status``) or give up (``permanently_failed``).

    After a failure ``n = retry_count + 1``; past ``policy.max_retries`` the row gives up, else it
    waits ``min(base × 2^(n−1), max)``. A staff retry (``may_give_up=False``) never gives up: a
    person asked for one more attempt, not for the worker's budget. Returns the outcome name.
    """
    attempt = transfer.retry_count + 1
    delay = policy.delay_after_failure(attempt)
    if delay is None and not may_give_up:
        delay = policy.backoff_max
    next_key = key
    rotated_after_unknown = False
    if isinstance(error, StripeTransientError):
        next_key = key_after_failure(key, error)
        rotated_after_unknown = next_key != key and error.may_have_executed
    fields = {
        key_field: next_key,
        "error_message": message,
        "retry_count": attempt,
        "needs_reconcile": rotated_after_unknown or transfer.needs_reconcile,
    }
    detail = {"error": message, "attempt": attempt}
    if delay is None:
        if transfer.status == TransferStatus.PENDING:
            # pending has no direct exit to permanently_failed: record the failure first.
            SellerTransfer.objects.transition(
                transfer,
                TransferStatus.FAILED,
                caused_by=caused_by,
                user=user,
                detail=detail,
                **fields,
            )
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.PERMANENTLY_FAILED,
            caused_by=caused_by,
            user=user,
            detail={**detail, "reason": "retries exhausted"},
            next_retry_at=None,
            **fields,
        )
        logger.error(
            "seller transfer gave up after retries",
            extra={"transfer_id": transfer.pk, "order_id": transfer.order_id, "error": message},
        )
        return "permanently_failed"
    SellerTransfer.objects.transition(
        transfer,
        retry_status,
        caused_by=caused_by,
        user=user,
        detail={**detail, "next_retry_in_s": delay.total_seconds()},
        next_retry_at=now + delay,
        **fields,
    )
    logger.warning(
        "seller transfer attempt failed; will retry",
        extra={
            "transfer_id": transfer.pk,
            "order_id": transfer.order_id,
            "status": retry_status,
            "attempt": attempt,
            "next_retry_in_s": delay.total_seconds(),
            "error": message,
        },
    )
    return "retry_scheduled"
