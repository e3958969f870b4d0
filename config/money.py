"""Money as people read it: integer minor units and a currency code become ``58.05 USD``.

Display only: amounts are stored and computed in minor units everywhere, and nothing here is
ever parsed back. The number of decimals follows Stripe's own tables, not ISO 4217: Stripe
counts ``ugx`` as zero-decimal, for instance, where ISO gives it two.
"""

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
# https://docs.stripe.com/currencies#three-decimal
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def currency_decimals(currency: str) -> int:
    """How many digits of an amount in ``currency`` come after the decimal point."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """An amount in minor units as a person reads it, with its currency code.

    ``5805, "usd"`` → ``58.05 USD``; ``-1800, "usd"`` → ``-18.00 USD``; ``5805, "jpy"`` →
    ``5,805 JPY``. Thousands are grouped with commas."""
    decimals = currency_decimals(currency)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**decimals)
    text = f"{major:,}"
    if decimals:
        text += f".{minor:0{decimals}d}"
    return f"{sign}{text} {currency.upper()}"
