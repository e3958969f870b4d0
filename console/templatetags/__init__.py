"""Template tags of the payouts admin (``{% load console_tags %}``)."""
