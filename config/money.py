"""Money as people read it: integer minor units and a currency code become ``58.05 USD``.

Amounts are stored and computed in minor units everywhere; what staff type in the console is
read back the same way (``parse_money``). The number of decimals follows Stripe's own tables,
not ISO 4217: Stripe counts ``ugx`` as zero-decimal, for instance, where ISO gives it two.
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


class AmountNotUnderstood(ValueError):
    """Typed text that is not an amount in the currency as the console shows it.

    The message says what to type instead."""


def _example(currency: str) -> str:
    return format_money(108 * 10 ** currency_decimals(currency), currency).rsplit(" ", 1)[0]


def parse_money(text: str, currency: str) -> int:
    """Read an amount typed the way the console shows it, in minor units.

    For example ``"108.00"`` USD → ``10800``, ``"5,805"`` JPY → ``5805``, ``"1.234"`` KWD →
    ``1234``. Commas may group thousands; the currency's code may follow. Raises
    ``AmountNotUnderstood``.

    Anything that could be read two ways is refused rather than guessed: ``"108"`` in a
    two-decimal currency may be 108.00 or 1.08 in cents (the mistake this exists to stop), and
    ``"1,080"`` may be a thousand and eighty or a European 1.08."""
    code = currency.upper()
    decimals = currency_decimals(currency)
    how = (
        f"type {code} in whole units, the way the console shows it, e.g. {_example(currency)}"
        if decimals == 0
        else f"type {code} with {decimals} decimals after a point, the way the console shows "
        f"it, e.g. {_example(currency)}"
    )
    words = text.strip().split()
    if len(words) == 2 and words[1].upper() == code:
        words = words[:1]
    if len(words) != 1:
        raise AmountNotUnderstood(f"{text.strip()!r} is not an amount: {how}")
    number = words[0]
    whole, point, fraction = number.partition(".")
    groups = whole.split(",")
    well_grouped = groups[0].isdigit() and (
        len(groups) == 1
        or (len(groups[0]) <= 3 and all(len(g) == 3 and g.isdigit() for g in groups[1:]))
    )
    if not well_grouped or (point and not fraction.isdigit()):
        raise AmountNotUnderstood(f"{number!r} is not an amount: {how}")
    if decimals == 0 and point:
        raise AmountNotUnderstood(f"{code} has no decimals: {how}")
    if decimals and len(fraction) != decimals:
        raise AmountNotUnderstood(
            f"{number!r} could be read more than one way: {how}"
            if not point
            else f"{number!r} does not have {decimals} decimals: {how}"
        )
    amount = int("".join(groups)) * 10**decimals + (int(fraction) if decimals else 0)
    if amount <= 0:
        raise AmountNotUnderstood(f"the amount must be more than zero: {how}")
    return amount
