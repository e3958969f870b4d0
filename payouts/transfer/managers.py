"""The seller transfer's manager, with its guarded ``transition``.

The manager is an interface to the seller transfer table: the guarded ``transition`` lives
here; *which* move to make, and any Stripe call, live in ``payouts.services``."""

from typing import Any

from django.db import models, transaction
from django.utils import timezone

from payouts.transfer.transitions import ConcurrentTransition, TransitionNotAllowed, can_transition


class SellerTransferManager(models.Manager):
    def transition(
        self,
        transfer: Any,
        to: str,
        *,
        caused_by: str,
        detail: dict | None = None,
        user: Any = None,
        **fields: Any,
    ) -> Any:
        """Move ``transfer`` to ``to`` with one guarded ``UPDATE … WHERE status = <from>``.

        A staff-only edge needs the ``user`` who takes it. ``fields`` are written in the same
        statement (``retry_count``, ``next_retry_at``, Stripe
        ids, …). On success an audit event is written in the same transaction and the instance
        is refreshed. Raises ``TransitionNotAllowed`` (nothing touched) or
        ``ConcurrentTransition`` (another actor moved the row first; nothing written).
        """
        from_status = transfer.status
        if "status" in fields:
            raise TypeError("pass the new status as `to`, not as a field")
        if not can_transition(from_status, to, by_staff=user is not None):
            raise TransitionNotAllowed(transfer.pk, from_status, to)

        with transaction.atomic():
            updated = self.filter(pk=transfer.pk, status=from_status).update(
                status=to, updated_at=timezone.now(), **fields
            )
            if updated != 1:
                raise ConcurrentTransition(transfer.pk, from_status, to)
            event = transfer.events.model.objects.create(
                transfer_id=transfer.pk,
                from_status=from_status,
                to_status=to,
                caused_by=caused_by,
                user=user,
                detail=detail or {},
            )
            transfer.refresh_from_db()
        # The audit event names this move: what the move posts in the book is keyed on it.
        transfer.last_event_id = event.pk
        return transfer
