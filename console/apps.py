"""The operator's console: Django's admin, whose site opens on the dashboard."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConsoleConfig(AppConfig):
    """The console's own pages, templates (ahead of the admin's), tags, health and metrics."""

    name = "console"
    default = True


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """The admin app's config, installing the console's site as the default site.

    ``django.contrib.admin`` with the console's site as the default site (listed by its dotted
    path in INSTALLED_APPS, never picked for the ``console`` app itself)."""

    default = False
    default_site = "console.admin_site.ConsoleAdminSite"
