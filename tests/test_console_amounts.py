"""Amounts typed in the console are read the way the console shows them: major units with the
currency's decimals (none for JPY, three for KWD), commas grouping thousands; anything that
could be read two ways is refused with a message saying what to type."""

import pytest

from config.money import AmountNotUnderstood, format_money, parse_money


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("108.00", "usd", 10800),
        (" 108.00 ", "usd", 10800),
        ("108.00 USD", "usd", 10800),
        ("108.00 usd", "usd", 10800),
        ("0.05", "eur", 5),
        ("1,234,567.89", "eur", 123456789),
        ("5805", "jpy", 5805),
        ("5,805", "jpy", 5805),
        ("5,805 JPY", "jpy", 5805),
        ("300", "krw", 300),
        ("1.234", "kwd", 1234),
    ],
)
def test_an_amount_typed_as_shown_is_read_in_the_currencys_minor_units(typed, currency, minor):
    assert parse_money(typed, currency) == minor


@pytest.mark.parametrize("minor", [1, 99, 10800, 123456789])
@pytest.mark.parametrize("currency", ["usd", "jpy", "kwd"])
def test_what_the_console_shows_reads_back_as_the_same_amount(minor, currency):
    assert parse_money(format_money(minor, currency), currency) == minor


@pytest.mark.parametrize(
    ("typed", "currency", "says"),
    [
        # Minor units, the old form's input: 108 could mean 108.00 or 1.08.
        ("108", "usd", "could be read more than one way: type USD with 2 decimals"),
        ("10800", "usd", "could be read more than one way"),
        ("108.0", "usd", "does not have 2 decimals"),
        ("1.080", "usd", "does not have 2 decimals"),
        ("108,00", "usd", "is not an amount"),
        ("1,08.00", "usd", "is not an amount"),
        ("5805.00", "jpy", "JPY has no decimals: type JPY in whole units"),
        ("1.23", "kwd", "does not have 3 decimals"),
        ("12.00 EUR", "usd", "is not an amount"),
        ("USD", "usd", "is not an amount"),
        ("", "usd", "is not an amount"),
        ("-5.00", "usd", "is not an amount"),
        ("0.00", "usd", "more than zero"),
        ("1e3", "jpy", "is not an amount"),
    ],
)
def test_ambiguous_or_malformed_input_is_refused_saying_what_to_type(typed, currency, says):
    with pytest.raises(AmountNotUnderstood) as refused:
        parse_money(typed, currency)
    assert says in str(refused.value)
    assert "e.g. " in str(refused.value)


def test_the_example_in_the_message_is_in_the_currencys_own_format():
    with pytest.raises(AmountNotUnderstood, match=r"e\.g\. 108\.00$"):
        parse_money("108", "usd")
    with pytest.raises(AmountNotUnderstood, match=r"e\.g\. 108$"):
        parse_money("1.5", "jpy")
    with pytest.raises(AmountNotUnderstood, match=r"e\.g\. 108\.000$"):
        parse_money("1.5", "kwd")
