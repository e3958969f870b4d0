"""Human durations for configuration: ``500ms``, ``30s``, ``1m``, ``1h``, ``1h30m``, ``7d``."""

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)


def parse_duration(text: str, *, zero_allowed: bool = False) -> timedelta:
    """Parse a human duration such as ``30s`` or ``1h30m`` into a ``timedelta``.

    Raise ``ValueError`` for anything else (bare numbers included, because "30" could mean
    seconds or minutes and a payouts knob must not be guessed). With ``zero_allowed``, ``0``
    means no time at all (a knob that can be switched off)."""
    value = text.strip().lower()
    if zero_allowed and value == "0":
        return timedelta(0)
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 30s, 1m, 1h30m, 7d)")
    parts = {unit: int(number) for unit, number in match.groupdict(default="0").items()}
    duration = timedelta(
        days=parts["d"],
        hours=parts["h"],
        minutes=parts["m"],
        seconds=parts["s"],
        milliseconds=parts["ms"],
    )
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return duration


def duration_text(value: timedelta) -> str:
    """Write a ``timedelta`` the way ``parse_duration`` reads it (``7d``, ``1h30m``, ``0``).

    Whole milliseconds are kept; a smaller part is dropped (no knob is that fine)."""
    total_ms = int(value.total_seconds() * 1000)
    if total_ms <= 0:
        return "0"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if total_ms:
        parts.append(f"{total_ms}ms")
    return "".join(parts)
