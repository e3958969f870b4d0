"""Run the reversal worker from a shell: once (like one beat tick), or until nothing is left."""

import json
import time
from collections import Counter
from datetime import timedelta

from django.core.management.base import BaseCommand

from payouts.models import SellerTransfer
from payouts.services.reversals import reversals_process_due
from payouts.transfer.transitions import TransferStatus


class Command(BaseCommand):
    help = "Process due reversals once, or with --drain until no row is reversal_pending."

    def add_arguments(self, parser):
        parser.add_argument("--drain", action="store_true", help="repeat until none is pending")
        parser.add_argument(
            "--max-seconds", type=float, default=600, help="stop draining after this long"
        )

    def handle(self, *args, drain, max_seconds, **options):
        total: Counter[str] = Counter()
        deadline = time.monotonic() + max_seconds
        while True:
            total.update(reversals_process_due(time_budget=timedelta(seconds=30)))
            pending = SellerTransfer.objects.filter(status=TransferStatus.REVERSAL_PENDING)
            if not drain or not pending.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stdout.write(json.dumps({**total, "peak_rss_kb": _peak_rss_kb()}, sort_keys=True))


def _peak_rss_kb() -> int | None:
    """The peak memory of this process, in kilobytes.

    This process's own memory high-water mark (``ru_maxrss`` would report the launcher's when
    that was larger: Linux carries it over exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
