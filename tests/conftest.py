"""Shared fixtures. The suite runs against the real Postgres (pytest-django creates the test
database) and, where a test needs Stripe, the project's own Stripe sandbox over HTTP."""
