import sys

import pytest

from tests.simulation.history import History, Step
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db

F3 = History(9, False, "on_open", (
    Step("pay", ("usd", (0,), (2000,))),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("seller_pays_out", (0,)),
    Step("refund", (0, 1.0)),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("write_off", (0,)),
    Step("fail_refund", (0,)),
))
F4 = History(9, True, "on_open", (
    Step("pay", ("usd", (0,), (2000,))),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("release", (0,)),
    Step("run_workers", ()),
    Step("seller_pays_out", (0,)),
    Step("refund", (0, 1.0)),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("pay", ("usd", (0,), (1000,))),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("refund", (1, 0.5)),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
))
F2 = History(9, False, "on_open", (
    Step("pay", ("usd", (0,), (2000,))),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("refund", (0, 0.5)),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
    Step("fail_refund", (0,)),
    Step("deliver_events", (999, False)),
    Step("stripe_fault", ("transfers.create", "drop_after_perform")),
    Step("run_workers", ()),
    Step("refund", (0, 0.5)),
    Step("deliver_events", (999, False)),
    Step("run_workers", ()),
))


@pytest.mark.parametrize("h", [F2, F3, F4], ids=["F2", "F3", "F4"])
def test_hand(h, sandbox, stripe_client, settings):
    out = run(h, Environment(sandbox, stripe_client, settings.PAYOUTS))
    print(h.describe(), "\n".join(out.failures), file=sys.stderr)
