"""Stripe's idempotency-key bookkeeping: reserve, complete, replay.

A key is reserved before an operation starts executing and completed with the
exact response bytes afterwards, so a replay is byte-for-byte the original.
Keys are global to the sandbox (Stripe scopes them per account; the sandbox
has only one platform account). Guarded by the Sandbox lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    fingerprint: Any
    done: bool = False
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


class IdempotencyStore:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def lookup(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def reserve(self, key: str, fingerprint: Any) -> Entry:
        entry = Entry(fingerprint)
        self._entries[key] = entry
        return entry

    def complete(
        self,
        key: str,
        entry: Entry,
        status: int,
        body: bytes,
        headers: dict[str, str],
        request_id: str,
    ) -> None:
        # A reset while the request was executing replaces or removes the entry;
        # the stale result must not leak into the fresh store.
        if self._entries.get(key) is not entry:
            return
        entry.done = True
        entry.status = status
        entry.body = body
        entry.headers = dict(headers)
        entry.request_id = request_id

    def release(self, key: str, entry: Entry) -> None:
        if self._entries.get(key) is entry and not entry.done:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def dump(self) -> list[dict[str, Any]]:
        """Completed entries as JSON-ready data (in-flight ones die with the process)."""
        return [
            {
                "key": key,
                "fingerprint": [entry.fingerprint[0], entry.fingerprint[1], entry.fingerprint[2]],
                "status": entry.status,
                "body": entry.body.decode("utf-8"),
                "headers": entry.headers,
                "request_id": entry.request_id,
            }
            for key, entry in self._entries.items()
            if entry.done
        ]

    def restore(self, saved: list[dict[str, Any]]) -> None:
        self._entries.clear()
        for item in saved:
            method, path, pairs = item["fingerprint"]
            fingerprint = (method, path, tuple(tuple(pair) for pair in pairs))
            self._entries[item["key"]] = Entry(
                fingerprint,
                done=True,
                status=item["status"],
                body=item["body"].encode("utf-8"),
                headers=dict(item["headers"]),
                request_id=item["request_id"],
            )
