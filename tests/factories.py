"""factory-boy factories for every model. Rows are created directly with their status: tests
may start a transfer anywhere in the state machine (the status-write guard scans only the
application packages)."""

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from marketplace.models import Order, OrderItem, Refund, Seller
from payouts.models import SellerTransfer, SellerTransferEvent, WebhookEvent
from payouts.transfer.transitions import TransferStatus


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class SellerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Seller

    name = factory.Sequence(lambda n: f"Seller {n}")
    email = factory.Sequence(lambda n: f"seller{n}@example.com")
    stripe_account_id = factory.Sequence(lambda n: f"acct_test{n:08d}")


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    buyer_email = factory.Sequence(lambda n: f"buyer{n}@example.com")
    currency = "usd"
    status = Order.Status.PENDING


class PaidOrderFactory(OrderFactory):
    status = Order.Status.PAID
    stripe_payment_intent_id = factory.Sequence(lambda n: f"pi_test{n:08d}")
    stripe_charge_id = factory.Sequence(lambda n: f"ch_test{n:08d}")


class OrderItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderItem

    order = factory.SubFactory(OrderFactory)
    seller = factory.SubFactory(SellerFactory)
    description = factory.Sequence(lambda n: f"Item {n}")
    amount = 1000


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    order = factory.SubFactory(PaidOrderFactory)
    stripe_refund_id = factory.Sequence(lambda n: f"re_test{n:08d}")
    amount = 1000
    currency = factory.SelfAttribute("order.currency")
    status = Refund.Status.PENDING


class SellerTransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SellerTransfer

    order = factory.SubFactory(PaidOrderFactory)
    seller = factory.SubFactory(SellerFactory)
    amount = 900
    platform_fee = 100
    currency = factory.SelfAttribute("order.currency")
    status = TransferStatus.PENDING

    class Params:
        completed = factory.Trait(
            status=TransferStatus.COMPLETED,
            stripe_transfer_id=factory.Sequence(lambda n: f"tr_test{n:08d}"),
        )
        reversal_due = factory.Trait(
            status=TransferStatus.REVERSAL_PENDING,
            reversal_target=factory.SelfAttribute("amount"),
            stripe_transfer_id=factory.Sequence(lambda n: f"tr_due{n:08d}"),
            next_retry_at=factory.LazyFunction(timezone.now),
        )


class SellerTransferEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SellerTransferEvent

    transfer = factory.SubFactory(SellerTransferFactory)
    from_status = TransferStatus.PENDING
    to_status = TransferStatus.COMPLETED
    caused_by = "test"
    detail = factory.LazyFunction(dict)


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    stripe_event_id = factory.Sequence(lambda n: f"evt_test{n:08d}")
    type = "payment_intent.succeeded"
    payload = factory.LazyAttribute(
        lambda e: {"id": e.stripe_event_id, "object": "event", "type": e.type, "data": {}}
    )
