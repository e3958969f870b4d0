"""Currencies and money arithmetic: Stripe's zero-decimal list, settlement conversion, display.

Amounts are integers in a currency's minor unit, as everywhere in Stripe's API:
cents for ``usd``, whole yen for ``jpy``. Converting a presentment amount to the
settlement currency goes through major units::

    settled = round_half_up(amount / minor(presentment) * rate * minor(settlement))

so 1000 JPY at a rate of 0.0067 settles as 670 US cents, and 1000 EUR cents at
1.0873 as 1087 US cents. Rounding is half up (away from zero on an exact half),
the way card networks and most ledgers round, and the same rule the payouts
service uses for its platform fee. Stripe's three-decimal currencies (bhd, jod,
kwd, omr, tnd) are treated as two-decimal, like Stripe's API does for amounts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)


def minor_per_major(currency: str) -> int:
    """How many minor units make one unit of ``currency`` (1 for zero-decimal currencies)."""
    return 1 if currency in ZERO_DECIMAL_CURRENCIES else 100


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def convert(amount: int, currency: str, rate: float | None, settlement: str) -> int:
    """``amount`` minor units of ``currency`` in minor units of ``settlement``.

    ``rate`` converts one major unit of ``currency`` to ``settlement``; it is
    ignored (and may be None) when the two currencies are the same.
    """
    if currency == settlement or rate is None:
        return amount
    major = Decimal(amount) / minor_per_major(currency)
    return round_half_up(major * Decimal(str(rate)) * minor_per_major(settlement))


def percentage(amount: int, percent: float) -> int:
    """``percent`` % of ``amount``, rounded half up to a whole minor unit."""
    return round_half_up(Decimal(amount) * Decimal(str(percent)) / 100)


def format_money(amount: int, currency: str) -> str:
    """Amounts the way Stripe writes them in error messages: ``$12.50``, ``1000 JPY``."""
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    value = f"{amount / 100:.2f}"
    return f"${value}" if currency == "usd" else f"{value} {currency.upper()}"
