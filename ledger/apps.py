from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Its staff money actions, for the approvals app to run (four eyes).
        from ledger.approval_actions import register_actions

        register_actions()
