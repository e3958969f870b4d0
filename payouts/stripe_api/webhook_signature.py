"""Stripe-Signature verification on the raw body (the one other module that imports stripe)."""

import stripe

TOLERANCE_SECONDS = 300


def signature_is_valid(raw_body: bytes, header: str | None, secrets: list[str]) -> bool:
    """Check a Stripe webhook signature against our endpoint secrets.

    True when ``header`` signs ``raw_body`` with any of ``secrets`` (several during a
    rotation) within the tolerance."""
    if not header or not secrets:
        return False
    try:
        payload = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            continue
        return True
    return False
