"""Building and signing Stripe events in tests, exactly as Stripe signs them."""

import hashlib
import hmac
import json
import time
import uuid

WEBHOOK_SECRET = "whsec_test_suite"


def make_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def sign(body: bytes, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_event(client, event: dict, *, secret: str = WEBHOOK_SECRET):
    """POST ``event`` to the webhook endpoint with a valid signature (Django test client or
    ``requests``-like ``client.post(url, data=…, headers=…)``)."""
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, secret),
    )
