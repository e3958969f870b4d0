"""Tests that drive the admin in a real browser (Debian's Chromium, through Playwright)."""
