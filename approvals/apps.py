from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """The approvals app: four eyes on staff money actions.

    It sits below the book and the payouts app: each of them registers its own actions here
    (``approvals.registry``), so neither imports the other."""

    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"
