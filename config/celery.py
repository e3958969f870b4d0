import os

from celery import Celery

# Fail closed: a worker or beat started without DJANGO_SETTINGS_MODULE runs production settings
# (which refuse to start without real secrets), never development ones. `make run` and the
# tests name their settings explicitly.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("payouts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
