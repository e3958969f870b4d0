"""Process stored webhook events again: those that failed, or the ones named."""

from django.core.management.base import BaseCommand

from payouts.models import WebhookEvent, WebhookOutcome
from payouts.services.webhooks import webhook_event_process


class Command(BaseCommand):
    help = "Replay stored Stripe events (default: every failed one)."

    def add_arguments(self, parser):
        parser.add_argument("event_ids", nargs="*", help="Stripe event ids (evt_…)")
        parser.add_argument(
            "--force", action="store_true", help="also replay events already processed"
        )

    def handle(self, *args, event_ids, force, **options):
        events = WebhookEvent.objects.order_by("received_at")
        if event_ids:
            events = events.filter(stripe_event_id__in=event_ids)
            missing = set(event_ids) - set(events.values_list("stripe_event_id", flat=True))
            for event_id in sorted(missing):
                self.stderr.write(f"{event_id}: not in the inbox")
        else:
            events = events.filter(outcome=WebhookOutcome.FAILED)
        for pk in events.values_list("pk", flat=True):
            event = webhook_event_process(event_id=pk, force=force)
            line = f"{event.stripe_event_id} {event.type}: {event.outcome}"
            self.stdout.write(f"{line} {event.error}".rstrip())
