"""Decoding of Stripe's form/query encoding and typed access to parameters.

stripe-python flattens nested params into bracketed keys (``metadata[order_id]=1``,
``expand[0]=a``), so the decoder rebuilds the nesting before operations see it.
Every leaf stays a string; the ``Params`` accessors do the coercion and raise
Stripe's own parameter errors.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_pairs(encoded: str) -> list[tuple[str, str]]:
    return parse_qsl(encoded, keep_blank_values=True)


def decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise invalid_request(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        _assign(root, parts, value, key)
    return root


def _assign(root: dict[str, Any], parts: list[str], value: str, full_key: str) -> None:
    container: Any = root
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(container, list):
            # Only ``a[]=x`` produces lists; anything deeper under it is unsupported.
            if not last:
                raise invalid_request(f"Invalid array: {full_key}", param=parts[0])
            container.append(value)
            return
        if last:
            if isinstance(container.get(part), (dict, list)):
                raise invalid_request(f"Invalid hash: {full_key}", param=parts[0])
            container[part] = value
            return
        next_is_append = parts[index + 1] == ""
        existing = container.get(part)
        if existing is None or existing == "":
            existing = [] if next_is_append else {}
            container[part] = existing
        elif not isinstance(existing, (dict, list)):
            raise invalid_request(f"Invalid hash: {full_key}", param=parts[0])
        container = existing


class Params:
    """Typed, validating view over decoded parameters."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] != ""

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise invalid_request(
                    f"Missing required param: {name}.", param=name, code="parameter_missing"
                )
            return None
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {name}", param=name)
        return value

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None):
        raw = self.string(name, required=required)
        if raw is None:
            return None
        try:
            number = int(raw)
        except ValueError:
            raise invalid_request(
                f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer"
            ) from None
        if minimum is not None and number < minimum:
            raise invalid_request(
                f"This value must be greater than or equal to {minimum}.",
                param=name,
                code="parameter_invalid_integer",
            )
        return number

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.string(name)
        if raw is None:
            return default
        if raw not in ("true", "false"):
            raise invalid_request(f"Invalid boolean: {raw}", param=name)
        return raw == "true"

    def currency(self, name: str = "currency", *, required: bool = True) -> str | None:
        raw = self.string(name, required=required)
        if raw is None:
            return None
        if not re.fullmatch(r"[A-Za-z]{3}", raw):
            raise invalid_request(f"Invalid currency: {raw.lower()}.", param=name)
        return raw.lower()

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None):
        raw = self.string(name)
        if raw is None:
            return default
        if raw not in allowed:
            raise invalid_request(
                f"Invalid {name}: must be one of {', '.join(allowed)}", param=name
            )
        return raw

    def timestamp_range(self, name: str = "created"):
        """A Unix-time filter, ``created=T`` or any of ``created[gt|gte|lt|lte]=T``, as a test
        of one timestamp (always true when the parameter is absent)."""
        raw = self.data.get(name)
        if raw is None or raw == "":
            return lambda value: True
        bounds = raw if isinstance(raw, dict) else {"eq": raw}
        tests = {
            "eq": lambda v, t: v == t,
            "gt": lambda v, t: v > t,
            "gte": lambda v, t: v >= t,
            "lt": lambda v, t: v < t,
            "lte": lambda v, t: v <= t,
        }
        checks = []
        for key, text in bounds.items():
            if key not in tests or key == "eq" and isinstance(raw, dict):
                raise invalid_request(f"Received unknown parameter: {name}[{key}]", param=name)
            if not isinstance(text, str) or not text.lstrip("-").isdigit():
                raise invalid_request(
                    f"Invalid integer: {text}", param=name, code="parameter_invalid_integer"
                )
            checks.append((tests[key], int(text)))
        return lambda value: all(test(value, bound) for test, bound in checks)

    def string_list(self, name: str) -> list[str]:
        """An array parameter, sent as ``name[]=a`` or, like stripe-python does, ``name[0]=a``."""
        raw = self.data.get(name)
        if raw is None or raw == "":
            return []
        if isinstance(raw, str):
            return [raw]
        if isinstance(raw, dict) and all(key.isdigit() for key in raw):
            raw = [raw[key] for key in sorted(raw, key=int)]
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise invalid_request(f"Invalid array: {name}", param=name)
        return raw

    def metadata(self) -> dict[str, str]:
        raw = self.data.get("metadata")
        if raw is None or raw == "":
            return {}
        if not isinstance(raw, dict):
            raise invalid_request("Invalid hash", param="metadata")
        result: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(value, str):
                raise invalid_request("Invalid hash", param=f"metadata[{key}]")
            if value != "":
                result[key] = value
        return result
