"""The payouts app's write services, one module per concern.

Services do the writes (HackSoft style); views, admin actions, webhook handlers and Celery
tasks are thin interfaces that parse input and call one of them."""
