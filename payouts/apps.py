from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "payouts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The seller's statement (the book's) shows a line per bank deposit.
        from ledger.selectors import statement_source_register
        from payouts.approval_actions import register_actions
        from payouts.selectors import payout_statement_lines

        statement_source_register(payout_statement_lines)
        # Its staff money actions, for the approvals app to run (four eyes).
        register_actions()
