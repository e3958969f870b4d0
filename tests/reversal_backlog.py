"""A backlog of due reversal rows with real transfers at the sandbox, and the environment that
points worker processes (``manage.py process_reversals``) at the test database and sandbox.
Shared by the multi-process tests."""

import os
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django.utils import timezone

from marketplace.models import Seller
from payouts.models import SellerTransfer
from payouts.transitions import TransferStatus
from tests.factories import PaidOrderFactory


def worker_environment(sandbox_url: str, **overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_SECRET_KEY": "sk_test_suite",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT": "1s",
        # A killed worker's rows come back when their lease (timeout x attempts + margin) ends;
        # the default 30 s margin would make this test wait half a minute after the last kill.
        "CLAIM_LEASE_MARGIN": "2s",
        "REVERSAL_BACKOFF_BASE": "100ms",
        "REVERSAL_BACKOFF_MAX": "500ms",
        "REVERSAL_MAX_RETRIES": "50",
        "REVERSAL_CONCURRENCY": "4",
        # The shared limiter is off: with 5 % injected 429s its fleet-wide pause per 429 would
        # stretch the run, and its Redis keys would be shared with other suites running now.
        "STRIPE_MAX_REQUESTS_PER_SECOND": "off",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


def reversal_backlog(stripe_client, size: int) -> list[SellerTransfer]:
    """``size`` due rows, one seller each on one refunded order, each with a real transfer."""
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    order = PaidOrderFactory()
    sellers = Seller.objects.bulk_create(
        Seller(name=f"s{i}", email=f"s{i}@example.com", stripe_account_id=f"acct_backlog{i}")
        for i in range(size)
    )
    amounts = [100 + i for i in range(size)]

    def create_transfer(amount: int) -> str:
        params = {"amount": amount, "currency": "usd", "destination": account.id}
        return stripe_client.v1.transfers.create(params=params).id

    with ThreadPoolExecutor(4) as pool:
        transfer_ids = list(pool.map(create_transfer, amounts))
    now = timezone.now()
    return SellerTransfer.objects.bulk_create(
        SellerTransfer(
            order=order,
            seller=seller,
            amount=amount,
            currency="usd",
            status=TransferStatus.REVERSAL_PENDING,
            reversal_target=amount,
            stripe_transfer_id=transfer_id,
            next_retry_at=now,
        )
        for seller, amount, transfer_id in zip(sellers, amounts, transfer_ids, strict=True)
    )
