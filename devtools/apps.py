from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Development-only commands behind ``make run``: installed by the local and test settings,
    never in production."""

    name = "devtools"
