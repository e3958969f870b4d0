"""The admin, with the operator's console as its site (``payouts.admin_site``)."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "payouts.admin_site.ConsoleAdminSite"
