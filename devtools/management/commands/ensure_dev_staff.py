"""The development staff login, for ``make run``.

Create (or reset) the development staff login. Refuses to run with DEBUG off. ``make run``
prints the login last, once the service is up (``run_service``)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEV_USERNAME = "admin"
DEV_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create (or reset) the development staff user (DEBUG only)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=DEV_USERNAME)
        parser.add_argument("--password", default=DEV_PASSWORD)

    def handle(self, *args, username, password, **options):
        if not settings.DEBUG:
            raise CommandError("ensure_dev_staff only runs with DEBUG on (development)")
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(self.style.SUCCESS(f"staff user {username} ready"))
