from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """App config of the development-only management commands.

    Development-only commands behind ``make run``: installed by the local and test settings,
    never in production."""

    name = "devtools"
