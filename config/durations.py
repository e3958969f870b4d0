"""Human durations for configuration: ``500ms``, ``30s``, ``1m``, ``1h``, ``1h30m``."""

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ``ValueError`` for anything else (bare numbers included,
    because "30" could mean seconds or minutes and a payouts knob must not be guessed)."""
    value = text.strip().lower()
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 30s, 1m, 1h, 1h30m)")
    parts = {unit: int(number) for unit, number in match.groupdict(default="0").items()}
    duration = timedelta(
        hours=parts["h"], minutes=parts["m"], seconds=parts["s"], milliseconds=parts["ms"]
    )
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return duration
