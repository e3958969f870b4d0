"""Filters for the console's templates: the admin's money, badges and Stripe links."""

from django import template

from console import display
from console.admin_site import attention_label, end_reason_advice, transfer_badge

register = template.Library()


@register.filter
def money(amount: int | None, currency: str):
    return display.money(amount, currency)


@register.filter
def age(duration):
    return display.age(duration)


@register.filter
def stripe_link(stripe_id: str):
    return display.stripe_link(stripe_id)


@register.filter
def transfer_status(status: str):
    return transfer_badge(status)


@register.filter
def attention(reason: str) -> str:
    return attention_label(reason)


@register.filter
def advice_for_end(end_reason: str) -> str:
    return end_reason_advice(end_reason)
