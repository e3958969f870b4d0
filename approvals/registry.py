"""The staff money actions that can wait for a second person, one entry each.

The apps that own an action register it when they start (``AppConfig.ready``): the book its
write-off, the payouts app its refunds, releases and re-queues. This app imports neither, so
the book still never imports the payouts app. A new kind is one entry in
``payouts.conf.APPROVAL_DEFAULTS`` (its default rule) and one ``register`` call here.

An action runs in two steps, so that running it once survives crashes and retries:

- ``prepare`` runs inside the transaction that claims the request (or, under the threshold,
  a transaction of its own): every database effect of the action, committed together with the
  request's new status. An action with no Stripe call is done here.
- ``send`` (when there is one) runs after that commit with no transaction open, and calls
  Stripe with an idempotency key built from what ``prepare`` reserved; ``resume`` finishes a
  send whose process died or whose answer was lost (it reads Stripe first). Both take what
  ``prepare`` returned and may run again: the action's own key makes a second run a replay.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config.errors import InvalidInput, StripeRefused


@dataclass(frozen=True, slots=True)
class Measured:
    """The amount, currency and parameters an approval rule judges an action by.

    The amount and currency the action moves, and its parameters as it will run (an amount "all that
    is left" made explicit, say)."""

    amount: int
    currency: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Ask:
    """One run of a staff money action.

    Its parameters, who asked and why, and the approval request it runs for (``None`` when it needed
    none)."""

    params: Mapping[str, Any]
    reason: str
    user: Any
    request_id: int | None = None
    approved_by: Any = None


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    label: str
    # Reads the parameters (raising a DomainError for bad or unknown ones, changing nothing).
    measure: Callable[[Mapping[str, Any]], Measured]
    # One line naming what it acts on, for the console and the API ("order 12").
    subject: Callable[[Mapping[str, Any]], str]
    prepare: Callable[[Ask], dict]
    send: Callable[[dict], dict] | None = None
    resume: Callable[[dict], dict] | None = None
    # Whether the action cannot run without a reason.
    reason_required: bool = False


class ActionOutcomeUnknown(StripeRefused):
    """The action may have run: Stripe's answer to it was lost.

    Lost to a timeout or a dropped connection. The request stays approved and is finished by
    ``resume``, never run afresh."""

    code = "outcome_unknown"


class UnknownActionKind(InvalidInput):
    code = "unknown_action"


_ACTIONS: dict[str, Action] = {}


def register(action: Action) -> None:
    _ACTIONS[action.kind] = action


def action_for(kind: str) -> Action:
    try:
        return _ACTIONS[kind]
    except KeyError:
        raise UnknownActionKind(f"no staff action {kind!r}") from None


def actions() -> list[Action]:
    return list(_ACTIONS.values())
