"""Small helpers shared by the Store and its parts: ids, the clock, change tracking."""

from __future__ import annotations

import copy
import secrets
import string
import time
from typing import Any

# The platform's own account id, the destination of account debits (a transfer made as a
# connected account to the platform).
PLATFORM_ACCOUNT_ID = "acct_sandboxplatform"
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    # Unseeded on purpose: ids must stay unique across resets and processes even
    # when fault injection is seeded for determinism.
    return prefix + "_1" + "".join(secrets.choice(_ALPHABET) for _ in range(23))


def now() -> int:
    return int(time.time())


def snapshot_fields(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Copies of ``fields`` of ``obj`` (None when absent), to diff against after a change."""
    return {name: copy.deepcopy(obj.get(name)) for name in fields}


def changed_attributes(before: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``data.previous_attributes``: the old values of the fields that changed."""
    return {name: old for name, old in before.items() if obj.get(name) != old}
