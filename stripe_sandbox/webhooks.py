"""Signed webhook delivery, the way Stripe signs and posts events.

Deliveries run on background threads so an API response never waits for the
receiver. Several senders run at once; like Stripe, the sandbox makes no
promise about the order in which events arrive. Each event gets one attempt;
tests deliver duplicates explicitly through the control API.

There are two endpoints, like a Stripe platform has: the platform endpoint gets
the platform's own events, the Connect endpoint (its own URL and signing
secret) gets the events of connected accounts, the ones whose envelope carries
``"account"``. Each delivery record says which endpoint it went to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_STOP = object()


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


def deliver(
    url: str,
    secret: str,
    event: dict[str, Any],
    timeout: float = 10.0,
    endpoint: str = "platform",
) -> dict[str, Any]:
    """POST one event; returns a delivery record (never raises)."""
    payload = encode_event(event)
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(payload, secret),
        },
    )
    record: dict[str, Any] = {
        "event_id": event["id"],
        "type": event["type"],
        "url": url,
        "endpoint": endpoint,
        "status": None,
        "error": None,
        "at": time.time(),
    }
    started = time.monotonic()
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            response.read()
            record["status"] = response.status
    except urllib.error.HTTPError as exc:
        record["status"] = exc.code
        exc.close()
    except Exception as exc:  # any transport failure is a failed delivery, not a crash
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return record


class WebhookSender:
    """Background delivery threads fed by a queue."""

    def __init__(
        self,
        on_delivery: Callable[[dict[str, Any], int], None],
        is_current: Callable[[int], bool],
        workers: int = 4,
        timeout: float = 10.0,
    ) -> None:
        self._on_delivery = on_delivery
        self._is_current = is_current
        self._queue: queue.Queue[Any] = queue.Queue()
        self._timeout = timeout
        self._threads = [
            threading.Thread(target=self._run, name=f"sandbox-webhooks-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        url: str,
        secret: str,
        event: dict[str, Any],
        generation: int,
        endpoint: str = "platform",
    ) -> None:
        self._queue.put((url, secret, event, generation, endpoint))

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            url, secret, event, generation, endpoint = item
            # Events queued before a reset belong to a world that no longer exists.
            if not self._is_current(generation):
                continue
            record = deliver(url, secret, event, self._timeout, endpoint)
            self._on_delivery(record, generation)
