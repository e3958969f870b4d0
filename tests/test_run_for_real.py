"""The service as it really runs: separate processes talking over HTTP, Redis and
Postgres, nothing called by hand.

- web under gunicorn, a Celery worker and Celery beat (1 s interval), all with production
  settings, against the pytest-django test database and Redis DB 9; the Stripe sandbox as a
  process. Signed webhooks go over HTTP; transfers and reversals happen because the queue and
  beat make them happen.
- `make demo` (``python -m demo``) against that running service.
- command one, `make run`, in a fresh clone of the repository.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import stripe
from django.db import connection
from psycopg import sql

from marketplace.models import Order
from marketplace.selectors import order_total
from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.transfer.transitions import TransferStatus
from stripe_sandbox.testing import SandboxControl, SandboxProcess
from tests.builders import WEBHOOK_SECRET, make_event, sign
from tests.factories import OrderFactory, OrderItemFactory, SellerFactory

ROOT = Path(__file__).resolve().parent.parent
BROKER_URL = "redis://127.0.0.1:6379/9"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


METRICS_TOKEN = "run-for-real-metrics-token-0123456789abcdef"


def http_get(url: str, timeout: float = 5, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_signed(url: str, event: dict) -> int:
    body = json.dumps(event).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
    )
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def eventually(check: Callable[[], bool], *, timeout: float, describe: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:.0f}s: {describe()}")
        time.sleep(0.25)


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RunningService:
    web_url: str
    sandbox: SandboxControl
    sandbox_url: str
    logs: Path

    def tail(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def _child_environment(sandbox_url: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "run-for-real-" + "x" * 50,
        "DJANGO_DEBUG": "false",
        # Plain HTTP on the loopback: no TLS proxy in front here.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": BROKER_URL,
        "STRIPE_SECRET_KEY": "sk_test_run_for_real",
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT": "5s",
        # The production default: beat's sweep is not what moves money, the wake-ups are.
        "REVERSAL_CHECK_INTERVAL": "1m",
        "METRICS_TOKEN": METRICS_TOKEN,
        "TRANSFER_RETRY_CHECK_INTERVAL": "1s",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def running_service(django_db_setup, tmp_path_factory):
    """gunicorn, a Celery worker, Celery beat and the sandbox, for the tests of this module."""
    logs = tmp_path_factory.mktemp("service")
    redis.Redis.from_url(BROKER_URL).flushdb()
    web_port = free_port()
    sandbox = SandboxProcess(log_path=logs / "sandbox.log")
    environment = _child_environment(sandbox.url)
    python = sys.executable
    commands = {
        "web": [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{web_port}"],
        "worker": [python, "-m", "celery", "-A", "config", "worker", "--concurrency=2"],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            f"--schedule={logs / 'celerybeat-schedule'}",
        ],
    }
    environment["WEB_CONCURRENCY"] = "2"
    children: dict[str, subprocess.Popen] = {}
    service = RunningService(
        web_url=f"http://127.0.0.1:{web_port}",
        sandbox=sandbox.control,
        sandbox_url=sandbox.url,
        logs=logs,
    )
    try:
        for name, command in commands.items():
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the child
            children[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        eventually(
            lambda: port_is_open(web_port) and http_get(f"{service.web_url}/healthz")[0] == 200,
            timeout=60,
            describe=service.tail,
        )
        yield service
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        sandbox.stop()


@pytest.fixture
def service(running_service, transactional_db):
    running_service.sandbox.reset()
    return running_service


def stripe_at(service: RunningService) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_run_for_real", base_addresses={"api": service.sandbox_url}, max_network_retries=0
    )


def statuses(order: Order) -> list[str]:
    return sorted(order.transfers.values_list("status", flat=True))


@pytest.mark.slow
def test_signed_webhooks_pay_the_sellers_and_a_refund_reverses_them_without_waiting_for_beat(
    service,
):
    client = stripe_at(service)
    order = OrderFactory()
    for amount in (1000, 2500, 4000):
        account = client.v1.accounts.create(params={"type": "express"})
        OrderItemFactory(
            order=order, seller=SellerFactory(stripe_account_id=account.id), amount=amount
        )
    intent = client.v1.payment_intents.create(
        params={
            "amount": order_total(order=order),
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(order.pk)},
        }
    ).to_dict()
    webhook = f"{service.web_url}/webhooks/stripe/"

    # Paid: the web app queues send_transfers on Redis; the worker pays each seller.
    assert post_signed(webhook, make_event("payment_intent.succeeded", intent)) == 200
    eventually(
        lambda: statuses(order) == [TransferStatus.COMPLETED] * 3,
        timeout=30,
        describe=lambda: f"{statuses(order)}\n{service.tail()}",
    )

    # Refunded at Stripe, the signed refund.created over HTTP; the web app wakes the worker
    # after commit. Beat's sweep runs once a minute: a reversal within seconds is the wake-up.
    refund = client.v1.refunds.create(params={"payment_intent": intent["id"]}).to_dict()
    assert post_signed(webhook, make_event("refund.created", refund)) == 200
    eventually(
        lambda: statuses(order) == [TransferStatus.REVERSED] * 3,
        timeout=10,
        describe=lambda: f"{statuses(order)}\n{service.tail()}",
    )

    ledger = {t["id"]: t for t in service.sandbox.ledger()["transfers"]}
    for transfer in SellerTransfer.objects.filter(order=order):
        at_stripe = ledger[transfer.stripe_transfer_id]
        assert at_stripe["reversal_count"] == 1
        assert at_stripe["amount_reversed"] == transfer.amount == transfer.amount_reversed
    reversed_by = set(
        SellerTransferEvent.objects.filter(
            transfer__order=order, to_status=TransferStatus.REVERSED
        ).values_list("caused_by", flat=True)
    )
    assert reversed_by == {"worker:process_reversals"}
    status, metrics = http_get(
        f"{service.web_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    assert 'payouts_transfers{status="reversed"} 3.0' in metrics.decode()


@pytest.mark.slow
def test_make_demo_tells_its_story_against_the_running_service(service):
    service.sandbox.configure_webhooks(f"{service.web_url}/webhooks/stripe/", WEBHOOK_SECRET)
    db = connection.settings_dict
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET"}
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CELERY_BROKER_URL=BROKER_URL,
        STRIPE_SANDBOX_URL=service.sandbox_url,
    )

    result = subprocess.run(
        [sys.executable, "-m", "demo", "--web-url", service.web_url, "--timeout", "30"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr + service.tail()
    order = Order.objects.get()
    assert order.status == Order.Status.REFUNDED
    assert statuses(order) == [TransferStatus.REVERSED] * 3
    for transfer in order.transfers.all():
        assert transfer.stripe_reversal_id in result.stdout
    assert "ledger consistent" in result.stdout


# --- Command one in a fresh clone -----------------------------------------------------------

CLONE_DATABASE = "payouts_clone_test"


def _drop_clone_database() -> None:
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(CLONE_DATABASE)
            )
        )


def _processes_inside(directory: Path) -> list[str]:
    """Processes whose working directory is in ``directory`` (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(f"{proc.name}: {command}")
    return found


@pytest.mark.slow
def test_command_one_starts_the_whole_service_from_a_fresh_clone_and_stops_on_ctrl_c(tmp_path):
    """`git clone` the checkout under test and run `make run` in the clone until /healthz
    answers 200, then Ctrl-C it (SIGINT to its process group).

    Only committed files reach the clone, so this checks what a newcomer really gets. To stay
    fast it borrows this test run's virtualenv (``VENV=<sys.prefix>``: the Makefile then uses it
    as it is and installs nothing); its own web and sandbox ports, Redis DB 10 and a scratch
    database keep it apart from anything else running here.
    """
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    _drop_clone_database()
    redis.Redis.from_url("redis://127.0.0.1:6379/10").flushdb()
    web_port, sandbox_port = free_port(), free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "MAKE", "PROMETHEUS_")) and key != "MFLAGS"
    }
    environment.update(
        VENV=sys.prefix,
        PORT=str(web_port),
        STRIPE_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{CLONE_DATABASE}",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/10",
    )
    output = tmp_path / "make-run.log"
    with output.open("wb") as log:
        make = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def serving() -> bool:
        if make.poll() is not None:
            pytest.fail(f"make run exited ({make.returncode}):\n{output.read_text()[-4000:]}")
        return (
            port_is_open(web_port)
            and http_get(f"http://127.0.0.1:{web_port}/healthz")[0] == 200
            and port_is_open(sandbox_port)
        )

    try:
        eventually(
            serving, timeout=180, describe=lambda: output.read_text(errors="replace")[-4000:]
        )
        status, body = http_get(f"http://127.0.0.1:{web_port}/healthz")
        assert status == 200
        assert (json.loads(body)["database"], json.loads(body)["redis"]) == ("ok", "ok")

        # The worker answers pings and runs beat's first heartbeat (one interval after start).
        def everything_up() -> bool:
            checks = json.loads(http_get(f"http://127.0.0.1:{web_port}/healthz")[1])
            return checks == {"database": "ok", "redis": "ok", "workers": "ok", "beat": "ok"}

        eventually(
            everything_up, timeout=90, describe=lambda: output.read_text(errors="replace")[-4000:]
        )

        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        leftovers = _processes_inside(clone)
        for line in leftovers:
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        _drop_clone_database()

    log = output.read_text(errors="replace")
    assert "staff login: admin / admin" in log
    for name in ("web", "worker", "beat", "sandbox"):
        assert f"{name}.1 started" in log, log[-4000:]
        assert f"{name}.1 stopped" in log, log[-4000:]
    assert leftovers == [], log[-4000:]
    assert not port_is_open(web_port)
    assert not port_is_open(sandbox_port)
