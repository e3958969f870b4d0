"""The debt-recovery ladder after netting: an account debit (Stripe's transfer made as the
connected account to the platform) once the debt is older than ``DEBT_DEBIT_AFTER`` and the
seller's policy allows it; a refused debit recorded, the debt aging on the console and in
/metrics; never a debit for a seller whose policy does not allow it; two workers racing for a
due debit make one debit at Stripe. Everything against the sandbox over HTTP."""

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from ledger.models import Entry, EntryKind
from ledger.selectors import seller_balances
from ledger.services import WriteOffRefused, debt_write_off
from marketplace.models import Refund
from payouts.models import AccountDebit, DebitState, SellerTransferEvent
from payouts.services.debits import debits_create_due, debts_debit_due
from payouts.services.ledger_check import ledger_check
from payouts.services.policies import seller_policy_set
from payouts.services.reversals import reversals_process_due
from payouts.transfer.transitions import TransferStatus
from tests.builders import paid_order, refund_at_stripe, staff_with

CONSENT = {"debits_allowed": True, "debit_consent_at": "2026-11-01T10:00:00Z"}


def seller_in_debt(client, sandbox, stripe_client, deliver):
    """A seller paid 1800, paid out to their bank, then refunded in full: the reversal is
    refused for their balance and the 1800 is their debt. No sale follows."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800)
    refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 1800)
    return row.seller


def debt_of(seller) -> int:
    return seller_balances(seller_id=seller.pk)["usd"]["debt"]


@pytest.fixture
def age_debt(monkeypatch):
    """Time passes: ``age_debt(seller, days)`` moves the service's clock ``days`` ahead.

    The book is append-only (its entries keep the time they were posted), so the clock moves
    instead: Django's ``timezone.now``, which every service, selector and page reads."""
    real_now = timezone.now

    def advance(seller, days: int) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(days=days))

    return advance


def allow_debits(seller) -> None:
    seller_policy_set(seller_id=seller.pk, changes=CONSENT, user=staff_with())


def debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt):
    """A seller owing 1800 for four days, with 2500 at Stripe again, who allows debits."""
    seller = seller_in_debt(client, sandbox, stripe_client, deliver)
    sandbox.adjust_account(seller.stripe_account_id, 2500)
    allow_debits(seller)
    age_debt(seller, 4)
    return seller


def debits_at_stripe(sandbox) -> list[dict]:
    return sandbox.state()["account_debits"]


@pytest.mark.django_db
def test_an_old_debt_is_debited_from_the_account_and_the_debt_is_zero(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = seller_in_debt(client, sandbox, stripe_client, deliver)
    account = seller.stripe_account_id
    sandbox.adjust_account(account, 2500)  # the seller's balance has money again
    allow_debits(seller)

    assert debts_debit_due() == {}  # not older than DEBT_DEBIT_AFTER (3 days) yet
    age_debt(seller, 4)
    assert debts_debit_due() == {"created": 1, "succeeded": 1}

    debit = AccountDebit.objects.get()
    assert (debit.state, debit.amount) == (DebitState.SUCCEEDED, 1800)
    [at_stripe] = debits_at_stripe(sandbox)
    assert at_stripe["id"] == debit.stripe_transfer_id
    assert (at_stripe["amount"], at_stripe["source_account"]) == (1800, account)
    assert at_stripe["destination"] == "acct_sandboxplatform"
    assert sandbox.account_balance(account)["available"][0]["amount"] == 700
    assert debt_of(seller) == 0
    assert Entry.objects.filter(kind=EntryKind.DEBT_DEBITED).count() == 1
    assert ledger_check()[1] == []
    assert debts_debit_due() == {}  # nothing is owed any more: no second debit


@pytest.mark.django_db
def test_a_refused_debit_is_recorded_and_the_debt_ages_on_the_console_and_in_metrics(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = seller_in_debt(client, sandbox, stripe_client, deliver)
    allow_debits(seller)
    age_debt(seller, 31)

    assert debts_debit_due() == {"created": 1, "refused": 1}

    debit = AccountDebit.objects.get()
    assert debit.state == DebitState.REFUSED
    assert "balance_insufficient" in debit.error_message
    assert debits_at_stripe(sandbox) == []
    assert debt_of(seller) == 1800
    assert debts_debit_due() == {}  # refused: not tried again before another 3 days
    assert ledger_check()[1] == []

    client.force_login(staff_with(is_superuser=True))
    board = client.get(reverse("admin:index")).content.decode()
    assert 'data-aged="30-usd"><span class="money">18.00 USD</span>' in board
    assert 'data-figure="debt-aged-60">0<' in board
    report = client.get(reverse("admin:needs_attention")).content.decode()
    assert 'data-aged="30-usd">1 owing <span class="money">18.00 USD</span>' in report
    assert 'data-aged="60-usd"' not in report
    metrics = client.get("/metrics").content.decode()
    assert 'payouts_debt_aged_amount{age_days="30",currency="usd"} 1800.0' in metrics
    assert 'payouts_debtors_aged{age_days="30",currency="usd"} 1.0' in metrics
    assert 'age_days="60"' not in metrics
    debits_page = client.get(reverse("admin:payouts_accountdebit_changelist")).content.decode()
    assert "balance_insufficient" in debits_page


@pytest.mark.django_db
def test_a_standard_account_cannot_be_debited_as_stripe_refuses_it(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = seller_in_debt(client, sandbox, stripe_client, deliver)
    standard = stripe_client.v1.accounts.create(params={"type": "standard"})
    sandbox.adjust_account(standard.id, 5000)
    type(seller).objects.filter(pk=seller.pk).update(stripe_account_id=standard.id)
    allow_debits(seller)
    age_debt(seller, 4)

    assert debts_debit_due() == {"created": 1, "refused": 1}
    assert "transfers_not_allowed" in AccountDebit.objects.get().error_message
    assert debt_of(seller) == 1800


@pytest.mark.django_db
def test_a_debit_is_never_attempted_for_a_seller_whose_policy_does_not_allow_it(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = seller_in_debt(client, sandbox, stripe_client, deliver)
    sandbox.adjust_account(seller.stripe_account_id, 2500)
    age_debt(seller, 100)
    calls_before = len(sandbox.calls("transfers.create"))

    assert debts_debit_due() == {}
    seller_policy_set(seller_id=seller.pk, changes={**CONSENT, "debits_allowed": False}, user=None)
    assert debts_debit_due() == {}

    assert not AccountDebit.objects.exists()
    assert len(sandbox.calls("transfers.create")) == calls_before
    assert debt_of(seller) == 1800


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_a_due_debit_make_one_debit_at_stripe(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    start = threading.Barrier(2)
    outcomes = []

    def worker():
        try:
            start.wait()
            outcomes.append(debts_debit_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcome.get("succeeded", 0) for outcome in outcomes) == [0, 1]
    assert len(debits_at_stripe(sandbox)) == 1
    assert AccountDebit.objects.get().state == DebitState.SUCCEEDED
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []


def waits_for_debit(seller) -> bool:
    """Whether the seller's transfer gives back nothing yet: it waits for the debit's answer."""
    event = SellerTransferEvent.objects.filter(transfer__seller=seller).latest("pk")
    return event.detail.get("waits_for") == "account_debit"


def debit_made_not_yet_sent(client, sandbox, stripe_client, deliver, age_debt):
    """A seller owing 1800 with money at Stripe again, whose debit row is made (the debt is old
    and the policy allows it) and waits for its call: the debit is in flight."""
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    assert debits_create_due(now=timezone.now()) == 1
    return seller


@pytest.mark.django_db
def test_a_write_off_leaves_the_debt_a_debit_in_flight_is_taking(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debit_made_not_yet_sent(client, sandbox, stripe_client, deliver, age_debt)

    with pytest.raises(WriteOffRefused, match="being debited"):
        debt_write_off(
            seller_id=seller.pk, currency="usd", amount=1800, reason="gone", user=staff_with()
        )
    assert debt_of(seller) == 1800  # nothing written off

    assert debts_debit_due() == {"succeeded": 1}
    assert debt_of(seller) == 0  # the debit took the debt, never more
    assert sandbox.account_balance(seller.stripe_account_id)["available"][0]["amount"] == 700
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_write_off_asked_through_the_api_during_a_debit_is_a_400_and_changes_nothing(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debit_made_not_yet_sent(client, sandbox, stripe_client, deliver, age_debt)
    client.force_login(staff_with(is_superuser=True))

    response = client.post(
        reverse("seller-debt-write-off", args=[seller.pk]),
        {"currency": "usd", "amount": 1800, "reason": "gone"},
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert "being debited" in response.json()["detail"]
    assert debt_of(seller) == 1800
    assert not Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).exists()


@pytest.mark.django_db
def test_a_refund_failing_while_its_debt_is_debited_never_takes_the_money_twice(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debit_made_not_yet_sent(client, sandbox, stripe_client, deliver, age_debt)
    account = seller.stripe_account_id
    refund = Refund.objects.get(order__items__seller=seller)

    # The buyer's refund fails: the seller is owed their 1800 again, so their debt is not owed.
    # Whether to cancel it or send it back depends on the debit's answer: the give-back waits.
    sandbox.fail_refund(refund.stripe_refund_id)
    deliver("charge.refund.updated")  # the give-back is tried at once, after commit
    assert waits_for_debit(seller)
    assert debts_debit_due() == {"succeeded": 1}  # the debit made before goes through
    age_debt(seller, 5)
    assert reversals_process_due() == {"given_back": 1}  # the debt was paid: sent back

    # The seller ends with what they had: the 2500 at Stripe, less 1800 debited, plus 1800 back.
    assert sandbox.account_balance(account)["available"][0]["amount"] == 2500
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_refund_failing_while_its_debt_is_debited_in_vain_cancels_the_debt(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debit_made_not_yet_sent(client, sandbox, stripe_client, deliver, age_debt)
    account = seller.stripe_account_id
    sandbox.adjust_account(account, -1000)  # 1500 left: the debit of 1800 will be refused
    refund = Refund.objects.get(order__items__seller=seller)

    sandbox.fail_refund(refund.stripe_refund_id)
    deliver("charge.refund.updated")  # the give-back is tried at once, after commit
    assert waits_for_debit(seller)
    assert debts_debit_due() == {"refused": 1}
    age_debt(seller, 5)
    reversals_process_due()

    # Nothing was taken and nothing is owed: the debt is cancelled, nothing sent back.
    assert sandbox.account_balance(account)["available"][0]["amount"] == 1500
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_debit_made_behind_a_lost_answer_is_found_at_stripe_once_its_key_may_be_forgotten(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])
    assert debts_debit_due() == {"created": 1, "retry_scheduled": 1}  # made, answer lost
    age_debt(seller, 6)  # two days on: Stripe forgets keys after 24 hours
    sandbox.forget_idempotency_keys()

    assert debts_debit_due() == {"succeeded": 1}  # read at Stripe, adopted

    [at_stripe] = debits_at_stripe(sandbox)  # never a second debit
    debit = AccountDebit.objects.get()
    assert (debit.state, debit.stripe_transfer_id) == (DebitState.SUCCEEDED, at_stripe["id"])
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_debit_that_stripe_never_made_is_sent_under_a_new_key_once_the_old_may_be_forgotten(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "rate_limit"}])
    assert debts_debit_due() == {"created": 1, "retry_scheduled": 1}  # nothing made
    first_key = AccountDebit.objects.get().idempotency_key
    age_debt(seller, 6)
    sandbox.forget_idempotency_keys()

    assert debts_debit_due() == {"succeeded": 1}

    [at_stripe] = debits_at_stripe(sandbox)
    debit = AccountDebit.objects.get()
    assert debit.idempotency_key != first_key
    assert (debit.state, debit.stripe_transfer_id) == (DebitState.SUCCEEDED, at_stripe["id"])
    assert debt_of(seller) == 0


@pytest.mark.django_db
def test_after_a_500_a_debit_reads_stripe_then_goes_under_a_new_key(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "error_500"}])
    assert debts_debit_due() == {"created": 1, "retry_scheduled": 1}
    debit = AccountDebit.objects.get()
    # Stripe replays a 500 to its key: the next attempt cannot use it, and the 500 may hide
    # a debit made, so Stripe is read first.
    assert debit.idempotency_key.endswith("-g1") and debit.read_stripe_first
    age_debt(seller, 5)  # past the backoff
    reads = len(sandbox.calls("transfers.list"))

    assert debts_debit_due() == {"succeeded": 1}

    assert len(sandbox.calls("transfers.list")) == reads + 1
    [at_stripe] = debits_at_stripe(sandbox)
    debit.refresh_from_db()
    assert (debit.state, debit.stripe_transfer_id) == (DebitState.SUCCEEDED, at_stripe["id"])
    assert not debit.read_stripe_first
    assert debt_of(seller) == 0


@pytest.mark.django_db
def test_a_debit_out_of_retries_after_a_lost_answer_is_adopted_not_given_up(
    client, sandbox, stripe_client, deliver, age_debt, settings
):
    conf = settings.PAYOUTS
    settings.PAYOUTS = replace(conf, debt_debit_retry=replace(conf.debt_debit_retry, max_retries=0))
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])

    # Its last attempt's answer is lost: Stripe is read before the debit is given up.
    assert debts_debit_due() == {"created": 1, "succeeded": 1}

    [at_stripe] = debits_at_stripe(sandbox)
    debit = AccountDebit.objects.get()
    assert (debit.state, debit.stripe_transfer_id) == (DebitState.SUCCEEDED, at_stripe["id"])
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_debit_out_of_retries_that_stripe_never_made_is_failed(
    client, sandbox, stripe_client, deliver, age_debt, settings
):
    conf = settings.PAYOUTS
    settings.PAYOUTS = replace(conf, debt_debit_retry=replace(conf.debt_debit_retry, max_retries=0))
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "error_500"}])

    assert debts_debit_due() == {"created": 1, "failed": 1}

    assert debits_at_stripe(sandbox) == []
    assert AccountDebit.objects.get().state == DebitState.FAILED
    assert debt_of(seller) == 1800


@pytest.mark.django_db
def test_a_debit_made_behind_a_lost_answer_is_recorded_when_consent_was_withdrawn_since(
    client, sandbox, stripe_client, deliver, age_debt
):
    seller = debt_ripe_for_a_debit(client, sandbox, stripe_client, deliver, age_debt)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])
    assert debts_debit_due() == {"created": 1, "retry_scheduled": 1}  # made, answer lost
    withdrawn = {**CONSENT, "debits_allowed": False}
    seller_policy_set(seller_id=seller.pk, changes=withdrawn, user=staff_with())
    age_debt(seller, 5)  # past the backoff

    # Consent stood when Stripe made it: found and recorded, never sent again.
    assert debts_debit_due() == {"succeeded": 1}

    [at_stripe] = debits_at_stripe(sandbox)
    assert AccountDebit.objects.get().stripe_transfer_id == at_stripe["id"]
    assert debt_of(seller) == 0
    assert ledger_check()[1] == []
