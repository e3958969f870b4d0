"""What every benchmark needs: a scratch database, the Stripe sandbox with a backlog of real
transfers, reversal worker processes with their peak memory, and a note of the machine.

Each script imports it as ``bench.harness``: they run from the project root as
``.venv/bin/python -m bench.<name>``, which puts the root (and with it the apps) on the path.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from stripe_sandbox.testing import SandboxProcess
from stripe_sandbox.webhooks import signature_header

ROOT = Path(__file__).resolve().parent.parent

PYTHON = sys.executable
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
SANDBOX_KEY = "sk_test_bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"
# A Celery broker of the benchmarks' own, so no other worker on the machine takes their tasks.
BENCH_BROKER_URL = "redis://127.0.0.1:6379/12"
# Statuses a reversal can end in; anything else still needs the worker.
TERMINAL = ("reversed", "permanently_failed")


def database_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True)


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    with connect("postgres") as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cpu": model,
        "cores": f"{usable} usable of {os.cpu_count()}",
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postgres": postgres,
        "kernel": platform.release(),
    }


def print_machine() -> None:
    print("machine:")
    for name, value in machine().items():
        print(f"  {name:<9} {value}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# -- the scratch database ----------------------------------------------------------------------


def service_environment(db_name: str, **extra: str) -> dict[str, str]:
    """The environment of a service process (manage.py, gunicorn) on the scratch database:
    development settings with DEBUG off, as a production worker runs (DEBUG keeps every query
    in memory, which would distort the memory benchmark)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url(db_name),
        "DJANGO_DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def manage(db_name: str, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=service_environment(db_name),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def drop_database(db_name: str) -> None:
    with connect("postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )


def create_database(db_name: str, *, template: str | None = None) -> None:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect("postgres") as conn:
        conn.execute(statement)


def migrated_template() -> str:
    """The name of a database migrated to the project's migrations, copied for every scratch
    database: a copy takes a fraction of a second, migrating a new database several (and the
    smoke runs in the test suite start one per bench). Built on first use and kept; its name
    carries a digest of the migrations (the project's files and Django's version), so a new or
    changed migration builds a new one. Any ``payouts_bench_template_…`` can be dropped at will."""
    digest = hashlib.sha256(importlib.metadata.version("django").encode())
    for package in sorted(path.parent for path in ROOT.glob("*/__init__.py")):
        for migration in sorted(package.rglob("migrations/*.py")):
            digest.update(str(migration.relative_to(ROOT)).encode() + migration.read_bytes())
    name = f"payouts_bench_template_{digest.hexdigest()[:16]}"
    with connect("postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return name
    # Built under a name of this process's own and renamed when complete, so that a run never
    # copies a half-migrated template, and two runs building at once both succeed.
    building = f"{name}_{os.getpid()}"
    drop_database(building)
    create_database(building)
    try:
        manage(building, "migrate", "--no-input")
        with connect("postgres") as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(name)
                )
            )
    except psycopg.errors.DuplicateDatabase:
        pass  # another run finished the same template first
    finally:
        drop_database(building)
    return name


@contextmanager
def scratch_database(db_name: str, *, keep: bool = False) -> Iterator[str]:
    """A freshly created and migrated database, dropped afterwards unless ``keep``."""
    if not db_name.startswith("payouts_bench"):
        raise ValueError("scratch databases are named payouts_bench…, so nothing else is dropped")
    if db_name.startswith("payouts_bench_template_"):
        raise ValueError("payouts_bench_template_… names the migrated template databases")
    drop_database(db_name)
    started = time.monotonic()
    template = migrated_template()
    create_database(db_name, template=template)
    print(f"database: {db_name} created from {template} in {time.monotonic() - started:.1f} s")
    try:
        yield db_name
    finally:
        if keep:
            print(f"database: {db_name} kept (--keep)")
        else:
            drop_database(db_name)
            print(f"database: {db_name} dropped")


def truncate_domain_tables(conn: psycopg.Connection) -> None:
    """Empty the tables a run fills (TRUNCATE is not refused by the audit trail's trigger)."""
    conn.execute(
        "TRUNCATE payouts_sellertransferevent, payouts_sellertransfer, marketplace_orderitem, "
        "marketplace_refund, marketplace_order, marketplace_seller RESTART IDENTITY CASCADE"
    )


# -- the sandbox and a backlog at it -----------------------------------------------------------


@contextmanager
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(seed=0, extra_args=("--quiet",)) as sandbox:
        yield sandbox


class _SandboxClient(threading.local):
    """One keep-alive connection per thread to the sandbox's Stripe API."""

    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, params: dict[str, object]) -> dict:
        body = urllib.parse.urlencode(params)
        headers = {
            "Authorization": f"Bearer {SANDBOX_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        for attempt in range(3):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.connection.request("POST", path, body, headers)
                response = self.connection.getresponse()
                payload = json.loads(response.read())
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"sandbox POST {path} -> {response.status}: {payload}")
            return payload
        raise AssertionError("unreachable")


def signed_event(
    event_type: str, obj: dict, secret: str, *, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A Stripe event around ``obj``, as the body and headers Stripe would POST."""
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature_header(body, secret),
    }
    return body, headers


def wait_until_serving(port: int, server: subprocess.Popen, path: str, timeout: float = 60):
    """Until ``GET path`` on the local ``port`` answers 200 (``server`` must keep running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing served {path} on port {port} in time")


def sandbox_client(base_url: str) -> _SandboxClient:
    """A client of the sandbox's Stripe API: ``post(path, form params)`` returns the JSON."""
    return _SandboxClient(base_url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_transfers(base_url: str, amounts: Sequence[int], *, threads: int = 6) -> list[str]:
    """Real transfers at the sandbox (one connected account), created by a few threads over
    keep-alive connections; returns their ids in the order of ``amounts``."""
    client = _SandboxClient(base_url)
    account = client.post("/v1/accounts", {"type": "express"})["id"]

    def create(amount: int) -> str:
        params = {"amount": amount, "currency": "usd", "destination": account}
        return client.post("/v1/transfers", params)["id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(create, amounts, chunksize=64))


def insert_reversal_backlog(
    conn: psycopg.Connection, transfer_ids: Sequence[str], amounts: Sequence[int]
) -> None:
    """One paid order and one seller per transfer, every transfer due for a full reversal
    (``reversal_target = amount``, ``next_retry_at = now``), as a refund leaves them."""
    with conn.transaction():
        order_id = conn.execute(
            "INSERT INTO marketplace_order (buyer_email, currency, status, "
            "stripe_payment_intent_id, stripe_charge_id, created_at, updated_at) "
            "VALUES ('buyer@bench.invalid', 'usd', 'refunded', 'pi_bench', 'ch_bench', "
            "now(), now()) RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at) "
            "SELECT 'seller ' || g, 'seller' || g || '@bench.invalid', 'acct_bench' || g, now() "
            "FROM generate_series(1, %s) AS g",
            [len(transfer_ids)],
        )
        sellers = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM marketplace_seller WHERE stripe_account_id LIKE 'acct_bench%%' "
                "ORDER BY id"
            )
        ]
        columns = (
            "order_id, seller_id, amount, platform_fee, currency, status, stripe_transfer_id, "
            "stripe_reversal_id, amount_reversed, reversal_target, transfer_idempotency_key, "
            "reversal_idempotency_key, read_stripe_first, retry_count, next_retry_at, "
            "error_message, created_at, updated_at"
        )
        with conn.cursor().copy(f"COPY payouts_sellertransfer ({columns}) FROM STDIN") as copy:
            for seller_id, transfer_id, amount in zip(sellers, transfer_ids, amounts, strict=True):
                copy.write_row(
                    (order_id, seller_id, amount, 0, "usd", "reversal_pending", transfer_id)
                    + ("", 0, amount, "", "", False, 0, "now", "", "now", "now")
                )
    conn.execute("ANALYZE payouts_sellertransfer")


def create_accounts(base_url: str, count: int, *, threads: int = 6) -> list[str]:
    """``count`` connected accounts at the sandbox, created by a few threads."""
    client = _SandboxClient(base_url)

    def create(_: int) -> str:
        return client.post("/v1/accounts", {"type": "express"})["id"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(create, range(count), chunksize=64))


def insert_transfer_backlog(
    conn: psycopg.Connection, account_ids: Sequence[str], amounts: Sequence[int]
) -> None:
    """One paid order per seller (each seller's own connected account, known to be able to
    receive), and its ``pending`` transfer row due now, as a payment leaves them."""
    count = len(account_ids)
    with conn.transaction():
        conn.execute(
            "INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at, "
            "account_status, account_status_at) "
            "SELECT 'payee ' || g, 'payee' || g || '@bench.invalid', a.id, now(), 'ready', now() "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS a(id, g)",
            [list(account_ids)],
        )
        conn.execute(
            "INSERT INTO marketplace_order (buyer_email, currency, status, "
            "stripe_payment_intent_id, stripe_charge_id, created_at, updated_at, "
            "settlement_amount, settlement_currency, settlement_net) "
            "SELECT 'buyer@bench.invalid', 'usd', 'paid', 'pi_pay' || g, '', now(), now(), "
            "0, 'usd', 0 FROM generate_series(1, %s) AS g",
            [count],
        )
        conn.execute(
            "INSERT INTO payouts_sellertransfer (order_id, seller_id, amount, platform_fee, "
            "currency, status, stripe_transfer_id, stripe_reversal_id, amount_reversed, "
            "reversal_target, transfer_idempotency_key, reversal_idempotency_key, "
            "read_stripe_first, retry_count, next_retry_at, error_message, created_at, "
            "updated_at) "
            "SELECT o.id, s.id, a.amount, 0, 'usd', 'pending', '', '', 0, 0, "
            "'pay-' || o.id, '', false, 0, now(), '', now(), now() "
            "FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS a(account, amount, g) "
            "JOIN marketplace_seller s ON s.stripe_account_id = a.account "
            "JOIN marketplace_order o ON o.stripe_payment_intent_id = 'pi_pay' || a.g",
            [list(account_ids), list(amounts)],
        )
    conn.execute("ANALYZE payouts_sellertransfer")


def backlog_amounts(rows: int) -> list[int]:
    return [100 + i % 9_900 for i in range(rows)]


@dataclass
class LedgerCheck:
    transfers: int
    double_reversed: int
    wrong_amount: int
    db_mismatch: int

    @property
    def clean(self) -> bool:
        return not (self.double_reversed or self.wrong_amount or self.db_mismatch)


def check_ledger(control, conn: psycopg.Connection) -> LedgerCheck:
    """Every backlog transfer reversed exactly once at the sandbox, in full, and the database
    agreeing with the sandbox on how much."""
    ours = dict(
        conn.execute(
            "SELECT stripe_transfer_id, amount_reversed FROM payouts_sellertransfer "
            "WHERE stripe_transfer_id <> ''"
        ).fetchall()
    )
    check = LedgerCheck(0, 0, 0, 0)
    for transfer in control.ledger()["transfers"]:
        if transfer["id"] not in ours:
            continue
        check.transfers += 1
        check.double_reversed += transfer["reversal_count"] > 1
        check.wrong_amount += transfer["amount_reversed"] != transfer["amount"]
        check.db_mismatch += transfer["amount_reversed"] != ours[transfer["id"]]
    check.wrong_amount += len(ours) - check.transfers  # a row whose transfer the sandbox lacks
    return check


# -- worker processes --------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    hwm_kb: int = 0  # VmHWM polled from /proc while it runs
    maxrss_kb: int = 0  # ru_maxrss reported by the kernel when it was reaped
    returncode: int | None = None
    summary: dict = field(default_factory=dict)

    @property
    def peak_rss_kb(self) -> int:
        """VmHWM, the peak of the worker's own address space. Not ``ru_maxrss`` (nor the
        command's ``peak_rss_kb``, which is ``ru_maxrss`` too): Linux carries the high-water mark
        of the address space replaced by ``exec`` into it, so a worker started by a process
        bigger than itself reports that process's size."""
        return self.hwm_kb


def proc_status_kb(pid: int, field_name: str = "VmHWM") -> int:
    """A memory figure (kB) from ``/proc/<pid>/status``; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class DrainResult:
    workers: list[Worker]
    seconds_to_terminal: float | None  # from launch until no row is reversal_pending
    seconds_to_exit: float  # from launch until the last worker exited
    timed_out: bool


def run_drain_workers(
    count: int,
    env: dict[str, str],
    *,
    conn: psycopg.Connection,
    max_seconds: float,
    log_dir: Path,
) -> DrainResult:
    """Start ``count`` ``process_reversals --drain`` workers and watch them every 0.1 s: the
    backlog, each worker's VmHWM (a high-water mark, so the last reading before exit is its
    peak to within 0.1 s of work) and its exit (reaped with ``wait4`` for ``ru_maxrss``).
    Workers still running ``max_seconds`` + 30 s after launch are killed."""
    command = [PYTHON, "manage.py", "process_reversals", "--drain"]
    command += ["--max-seconds", str(int(max_seconds))]
    workers = []
    started = time.monotonic()
    for index in range(count):
        stdout_path = log_dir / f"worker{index}.out"
        stderr_path = log_dir / f"worker{index}.log"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        workers.append(Worker(process, stdout_path, stderr_path))
    terminal_at = None
    hard_deadline = started + max_seconds + 30
    timed_out = False
    while any(w.returncode is None for w in workers):
        now = time.monotonic()
        if terminal_at is None:
            pending = conn.execute(
                "SELECT count(*) FROM payouts_sellertransfer WHERE status = 'reversal_pending'"
            ).fetchone()[0]
            if pending == 0:
                terminal_at = now
        for worker in workers:
            if worker.returncode is not None:
                continue
            worker.hwm_kb = max(worker.hwm_kb, proc_status_kb(worker.process.pid))
            pid, status, usage = os.wait4(worker.process.pid, os.WNOHANG)
            if pid:
                worker.returncode = worker.process.returncode = os.waitstatus_to_exitcode(status)
                worker.maxrss_kb = usage.ru_maxrss  # kilobytes on Linux
        if now > hard_deadline:
            timed_out = True
            for worker in workers:
                if worker.returncode is None:
                    worker.process.send_signal(signal.SIGKILL)
        time.sleep(0.1)
    exited_at = time.monotonic()
    for worker in workers:
        lines = worker.stdout_path.read_text().strip().splitlines()
        try:
            worker.summary = json.loads(lines[-1]) if lines else {}
        except ValueError:
            worker.summary = {"unparsed": lines[-1]}
    return DrainResult(
        workers=workers,
        seconds_to_terminal=None if terminal_at is None else terminal_at - started,
        seconds_to_exit=exited_at - started,
        timed_out=timed_out,
    )


def worker_environment(db_name: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    """A reversal worker on the scratch database, talking to the sandbox. The shared Stripe
    rate limiter gets a Redis database of its own: its keys are not namespaced per deployment,
    so a development service on the default database would otherwise share the budget."""
    return service_environment(
        db_name,
        STRIPE_SECRET_KEY=SANDBOX_KEY,
        STRIPE_API_BASE=sandbox_url,
        STRIPE_RATE_LIMIT_REDIS_URL=BENCH_REDIS_URL,
        **extra,
    )


def parse_env_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env expects NAME=VALUE, got {pair!r}")
        overrides[name] = value
    return overrides


def log_directory(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-"))


def outcome_counts(workers: Sequence[Worker]) -> dict[str, int]:
    total: dict[str, int] = {}
    for worker in workers:
        for name, value in worker.summary.items():
            if isinstance(value, int) and name != "peak_rss_kb":
                total[name] = total.get(name, 0) + value
    return total
