"""One worker process of the drain benchmark: pays due seller transfers and reverses due
transfers at the same time, through the service's own workers, until neither is left.

Paying runs ``transfers_send_due`` in ``--pay-threads`` threads (what several Celery tasks of
``retry_failed_transfers``/``send_transfers`` would do at once); reversing runs
``reversals_process_due`` (``REVERSAL_CONCURRENCY`` threads of its own), in a loop. Every Stripe
call goes through the shared limiter, configured by ``STRIPE_RATE_LIMITS`` in the environment.
Prints one JSON line: the outcomes counted.

    DJANGO_SETTINGS_MODULE=config.settings.local python bench/drain_worker.py --pay-threads 4
"""

import argparse
import json
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from payouts.models import SellerTransfer  # noqa: E402
from payouts.services.reversals import reversals_process_due  # noqa: E402
from payouts.services.transfers import SENDABLE, transfers_send_due  # noqa: E402
from payouts.transfer.transitions import TransferStatus  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pay-threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600)
    options = parser.parse_args()
    deadline = time.monotonic() + options.max_seconds
    totals: Counter[str] = Counter()
    lock = threading.Lock()

    def left(statuses) -> bool:
        return SellerTransfer.objects.filter(status__in=statuses).exists()

    def pay() -> None:
        try:
            while time.monotonic() < deadline:
                done = transfers_send_due(limit=5)
                with lock:
                    totals.update({f"pay:{k}": v for k, v in done.items()})
                if not done:
                    if not left(SENDABLE):
                        return
                    time.sleep(0.1)  # rows leased by another worker
        finally:
            connection.close()

    def reverse() -> None:
        try:
            while time.monotonic() < deadline:
                done = reversals_process_due(time_budget=timedelta(seconds=30))
                with lock:
                    totals.update({f"reverse:{k}": v for k, v in done.items()})
                if not left([TransferStatus.REVERSAL_PENDING]):
                    return
                time.sleep(0.1)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay) for _ in range(options.pay_threads)]
    threads.append(threading.Thread(target=reverse))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(dict(totals), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
