"""A small stateful fake of the Stripe API subset the payouts service uses.

Standard library only, no Django. Run it with ``python -m stripe_sandbox`` or,
in tests, with ``stripe_sandbox.testing.RunningSandbox``.
"""

from .faults import ACTIONS, KNOBS
from .money import ZERO_DECIMAL_CURRENCIES
from .persistence import StateFileError
from .sandbox import Sandbox
from .state import API_VERSION, OPERATIONS
from .testing import RunningSandbox, SandboxControl, SandboxControlError, SandboxProcess
from .webhooks import signature_header

__all__ = [
    "ACTIONS",
    "API_VERSION",
    "KNOBS",
    "OPERATIONS",
    "RunningSandbox",
    "Sandbox",
    "SandboxControl",
    "SandboxControlError",
    "SandboxProcess",
    "StateFileError",
    "ZERO_DECIMAL_CURRENCIES",
    "signature_header",
]
