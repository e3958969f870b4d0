"""``python -m demo`` (``make demo``): a realistic story driven through the running service.

A development tool, not part of the service: like a buyer's browser or the Stripe Dashboard, it
talks to Stripe (the local sandbox) with stripe-python, and it creates the sellers and the order
with the Django ORM because the service has no public order API.
"""
