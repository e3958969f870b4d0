"""``--state-file``: the sandbox's state as one JSON file that survives a restart.

The ``Sandbox`` serializes its state while holding its lock (so the snapshot is
consistent) and hands the text here to write after releasing it. Writes go to a
temporary file that then replaces the state file, so a crash mid-write leaves the
previous state intact. Snapshots carry a sequence number and an older one never
overwrites a newer one, whatever order concurrent requests finish writing in.

What is kept: every Stripe object, events and deliveries, settlement and refund
configuration, completed idempotency keys (a retry after a restart still
replays), and webhook endpoints set through the control API. What is not: fault
knobs and scripts, the rate limit and the call log, which describe one run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class StateFileError(Exception):
    """The state file exists but can't be used."""


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._written = 0

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"cannot read {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateFileError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StateFileError(f"{self.path} does not hold a sandbox state object")
        return data

    def save(self, sequence: int, text: str) -> None:
        """Write snapshot number ``sequence`` unless a newer one is already on disk."""
        with self._lock:
            if sequence <= self._written:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            self._written = sequence
