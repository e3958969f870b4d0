from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "payouts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process (the web app too), so the wake-ups can
        # send them by name without importing them.
        import payouts.tasks  # noqa: F401
        from config.errors import show_with_errors
        from ledger.selectors import debt_claim_register, statement_source_register
        from marketplace.models import Refund
        from payouts.approval_actions import register_actions
        from payouts.http.serializers import RefundSerializer, SellerTransferSerializer
        from payouts.models import SellerTransfer
        from payouts.selectors import payout_statement_lines
        from payouts.services.debits import debits_in_flight

        # A staff API error about a transfer or a refund shows the row as it now stands.
        show_with_errors(SellerTransfer, name="transfer", serializer=SellerTransferSerializer)
        show_with_errors(Refund, name="refund", serializer=RefundSerializer)
        # The seller's statement (the book's) shows a line per bank deposit.
        statement_source_register(payout_statement_lines)
        # A debit sent to Stripe settles its part of the seller's debt: nothing else may.
        debt_claim_register(debits_in_flight)
        # Its staff money actions, for the approvals app to run (four eyes).
        register_actions()
