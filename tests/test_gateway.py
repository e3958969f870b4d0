"""The Stripe gateway's error classification and idempotency rules, through the real
stripe-python client speaking HTTP to the sandbox."""

import pytest

from payouts.stripe_api.gateway import (
    StripeTransientError,
    TransferAlreadyReversed,
    TransferNotFound,
    get_gateway,
)
from payouts.transfer.idempotency import NextAttempt, next_attempt
from tests.builders import stripe_transfer


@pytest.fixture
def gateway(sandbox):
    return get_gateway()


@pytest.fixture
def transfer_id(sandbox, stripe_client):
    """A transfer of 1,000 at the sandbox."""
    return stripe_transfer(stripe_client, 1000)


def reverse(gateway, transfer_id, *, key="key-g0", amount=None):
    return gateway.reverse_transfer(transfer_id, amount=amount, metadata={}, idempotency_key=key)


def error(status: int, message: str, **fields) -> dict:
    return {
        "status": status,
        "error": {"type": "invalid_request_error", "message": message, **fields},
    }


def test_a_reversal_returns_its_trr_id(gateway, transfer_id):
    reversal = reverse(gateway, transfer_id, amount=400)

    assert reversal.id.startswith("trr_")
    assert (reversal.amount, reversal.transfer_id) == (400, transfer_id)


def test_stripes_own_second_full_reversal_refusal_is_already_reversed(gateway, transfer_id):
    reverse(gateway, transfer_id, key="first-g0")

    with pytest.raises(TransferAlreadyReversed, match="already fully reversed"):
        reverse(gateway, transfer_id, key="second-g0")


@pytest.mark.parametrize(
    "wording",
    [
        "The transfer {id} is already fully reversed.",
        "THE TRANSFER {id} IS ALREADY FULLY REVERSED.",
        "the transfer {id} is already fully reversed.",
        "The Transfer {id} Is Already Fully REVERSED.",
    ],
)
def test_already_reversed_wording_matches_in_any_case(
    sandbox, gateway, stripe_client, transfer_id, wording
):
    stripe_client.v1.transfers.reversals.create(transfer_id)  # really reversed: confirmable
    sandbox.script("reversals.create", [error(400, wording.format(id=transfer_id))])

    with pytest.raises(TransferAlreadyReversed):
        reverse(gateway, transfer_id)


def test_already_reversed_wording_that_stripe_figures_contradict_is_transient(
    sandbox, gateway, transfer_id
):
    sandbox.script("reversals.create", [error(400, "The transfer is already fully reversed.")])

    with pytest.raises(StripeTransientError, match="0 of 1000 reversed"):
        reverse(gateway, transfer_id)


def test_a_400_without_those_words_is_transient(sandbox, gateway, transfer_id):
    sandbox.script("reversals.create", [error(400, "Something else went wrong.")])

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert (caught.value.http_status, caught.value.response_seen) == (400, True)
    assert not caught.value.may_have_executed


def test_an_unknown_transfer_is_not_found(gateway):
    with pytest.raises(TransferNotFound) as caught:
        reverse(gateway, "tr_doesnotexist")

    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


def test_a_404_with_another_code_is_transient(sandbox, gateway, transfer_id):
    sandbox.script("reversals.create", [error(404, "Not here right now.", code="something_else")])

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert caught.value.http_status == 404


def test_a_402_is_classified_by_its_body_not_as_a_card_error(sandbox, gateway, transfer_id):
    sandbox.script(
        "reversals.create",
        [error(402, "Insufficient funds in the account.", code="balance_insufficient")],
    )

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert (caught.value.http_status, caught.value.code) == (402, "balance_insufficient")


@pytest.mark.parametrize("code", ["rate_limit", "lock_timeout"])
def test_429s_are_transient_and_rate_limited(sandbox, gateway, transfer_id, code):
    sandbox.script("reversals.create", [error(429, "Slow down.", code=code)])

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert caught.value.rate_limited
    # Stripe stored nothing: the same key again, nothing to read first.
    assert next_attempt("k-g0", caught.value, read_stripe_first=False) == NextAttempt("k-g0", False)


def test_the_sandbox_rate_limit_is_a_transient_429(sandbox, gateway, transfer_id):
    sandbox.set_rate_limit(per_second=0.001, burst=1)
    reverse(gateway, transfer_id, amount=1)

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id, key="next-g0", amount=1)

    assert (caught.value.http_status, caught.value.code) == (429, "rate_limit")


def test_a_key_in_flight_keeps_the_key(sandbox, gateway, transfer_id):
    sandbox.script(
        "reversals.create",
        [
            {
                "status": 409,
                "error": {
                    "type": "idempotency_error",
                    "code": "idempotency_key_in_use",
                    "message": "There is currently another in-progress request using this key.",
                },
            }
        ],
    )

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert not caught.value.response_seen
    assert next_attempt("k-g0", caught.value, read_stripe_first=False).key == "k-g0"


def test_a_5xx_takes_a_new_key_and_flags_a_possible_execution(sandbox, gateway, transfer_id):
    sandbox.script("reversals.create", [{"action": "error_500"}])

    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id)

    assert caught.value.may_have_executed
    assert next_attempt("k-g0", caught.value, read_stripe_first=False) == NextAttempt(
        "k-g1", read_stripe_first=True, renewed=True
    )


def test_a_timeout_is_transient_and_keeps_the_key(sandbox, short_stripe_timeout, transfer_id):
    # The sandbox holds the request past the client's timeout.
    sandbox.script("reversals.create", [{"action": "timeout", "timeout_seconds": 1}])

    with pytest.raises(StripeTransientError) as caught:
        reverse(get_gateway(), transfer_id)

    assert caught.value.http_status is None
    assert next_attempt("k-g0", caught.value, read_stripe_first=False).key == "k-g0"


def test_replaying_the_key_after_a_dropped_response_returns_the_same_reversal(
    sandbox, gateway, transfer_id
):
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    with pytest.raises(StripeTransientError) as caught:
        reverse(gateway, transfer_id, key="same-g0", amount=300)
    assert not caught.value.response_seen

    replayed = reverse(gateway, transfer_id, key="same-g0", amount=300)

    at_stripe = gateway.retrieve_transfer(transfer_id)
    assert at_stripe.amount_reversed == 300  # performed once, not twice
    assert [r.id for r in gateway.list_reversals(transfer_id)] == [replayed.id]


def test_a_transfer_creation_returns_its_tr_id(gateway, stripe_client):
    account = stripe_client.v1.accounts.create(params={"type": "express"})

    created = gateway.create_transfer(
        amount=700,
        currency="usd",
        destination=account.id,
        transfer_group="order_1",
        source_transaction=None,
        metadata={"order_id": "1", "seller_transfer_id": "9"},
        idempotency_key="create-g0",
    )

    assert created.id.startswith("tr_")
    assert [t.id for t in gateway.find_transfers(transfer_group="order_1")] == [created.id]
