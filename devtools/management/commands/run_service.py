"""Run the whole service on a developer's machine, in one terminal.

Start the whole service in the foreground with honcho: web, Celery worker, Celery beat, and,
when no STRIPE_SECRET_KEY is configured, the local Stripe sandbox sending signed webhooks to the
web app. Once the web app and a worker answer, print where to go and the staff login, last, so
that it does not scroll away under the start-up logs. Ctrl-C stops them all. The last step of
``make run``."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.celery import app as celery_app
from devtools.management.commands.ensure_dev_staff import DEV_PASSWORD, DEV_USERNAME
from payouts.models import SellerTransfer

PROCFILE = Path(settings.BASE_DIR) / "Procfile.dev"
# Run-time files (beat's schedule, Prometheus' per-process counters); ignored by git.
RUN_DIR = Path(settings.BASE_DIR) / "var"
DEFAULT_WEB_PORT = 8000
# Development only: the demo's reversals and retries happen within seconds, not minutes.
# Whatever the environment or .env sets wins.
DEV_INTERVALS = {"REVERSAL_CHECK_INTERVAL": "5s", "TRANSFER_RETRY_CHECK_INTERVAL": "5s"}
# The sandbox keeps its objects here across restarts, as Stripe would (it is in var/, which git
# ignores); SANDBOX_STATE_FILE puts it elsewhere.
SANDBOX_STATE_FILE = RUN_DIR / "sandbox-state.json"
# How long to wait for the web app and a worker before printing the login anyway.
READY_TIMEOUT_SECONDS = 90
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Plan:
    processes: list[str]
    argv: list[str]
    environment: dict[str, str]


# What Celery's worker prints when it runs as root (a development container, say).
ROOT_WARNING = "You're running the worker with superuser privileges"


def plan_service(*, web_port: int, environ: dict[str, str], as_root: bool = False) -> Plan:
    """What to start and with which environment; pure, so it can be checked without starting.

    The logs are text: honcho prefixes each line with its process and a person reads them,
    whether its output is a terminal or a file (LOG_FORMAT=json asks for JSON lines).

    ``as_root``: Celery's worker warns that it runs with superuser privileges. Its real danger
    is a worker taking pickled messages as root (code from the broker run as root), which
    Celery refuses outright; this one accepts JSON only. In development that warning is
    explained once by ``make run`` and silenced; production runs as an unprivileged user."""
    python = sys.executable
    environment = {
        **DEV_INTERVALS,
        "LOG_FORMAT": "text",
        "SANDBOX_STATE_FILE": str(SANDBOX_STATE_FILE),
        **environ,
        "PYTHON": python,
        "PYTHONUNBUFFERED": "1",
        "WEB_PORT": str(web_port),
        "BEAT_SCHEDULE": str(RUN_DIR / "celerybeat-schedule"),
        "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
    }
    if as_root:
        silenced = f"ignore:{ROOT_WARNING}"
        earlier = environment.get("PYTHONWARNINGS")
        environment["PYTHONWARNINGS"] = f"{earlier},{silenced}" if earlier else silenced
    processes = ["web", "worker", "beat"]
    if getattr(settings, "STRIPE_USES_LOCAL_SANDBOX", False):
        processes.append("sandbox")
        environment.update(_sandbox_environment(web_port))
    honcho = str(Path(python).with_name("honcho"))
    argv = [
        honcho,
        "--procfile",
        str(PROCFILE),
        "--app-root",
        str(settings.BASE_DIR),
        # honcho would read .env over the process environment; settings already read it the
        # other way round (the environment wins), and this process passes the result on.
        "--env",
        os.devnull,
        "start",
        "--port",
        str(web_port),
        *processes,
    ]
    return Plan(processes=processes, argv=argv, environment=environment)


def _sandbox_environment(web_port: int) -> dict[str, str]:
    """Where the local Stripe sandbox listens, and where it sends its signed webhooks."""
    sandbox = urlsplit(settings.SANDBOX_URL)
    return {
        "SANDBOX_HOST": sandbox.hostname or "127.0.0.1",
        "SANDBOX_PORT": str(sandbox.port or 80),
        "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{web_port}/webhooks/stripe/",
        # The app accepts the first of its webhook secrets (whsec_local_sandbox by default).
        "SANDBOX_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRETS[0],
        "SANDBOX_CONNECT_WEBHOOK_URL": f"http://127.0.0.1:{web_port}/webhooks/stripe/connect/",
        "SANDBOX_CONNECT_WEBHOOK_SECRET": settings.STRIPE_CONNECT_WEBHOOK_SECRETS[0],
    }


class Command(BaseCommand):
    help = (
        "Start web, Celery worker, Celery beat and (without STRIPE_SECRET_KEY) the Stripe "
        "sandbox in the foreground; Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, help=f"web port (default: $PORT, else {DEFAULT_WEB_PORT})"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print what would start, start nothing"
        )

    def handle(self, *args, port, dry_run, **options):
        # os.environ holds .env's values too: settings loaded it without overriding anything.
        web_port = port or int(os.environ.get("PORT") or DEFAULT_WEB_PORT)
        as_root = os.geteuid() == 0
        plan = plan_service(web_port=web_port, environ=dict(os.environ), as_root=as_root)
        self._describe(plan, web_port)
        if dry_run:
            self.stdout.write(" ".join(plan.argv))
            for name in ("REVERSAL_CHECK_INTERVAL", "TRANSFER_RETRY_CHECK_INTERVAL", "LOG_FORMAT"):
                self.stdout.write(f"{name}={plan.environment[name]}")
            for name in ("SANDBOX_WEBHOOK_URL", "SANDBOX_WEBHOOK_SECRET", "SANDBOX_STATE_FILE"):
                if name in plan.environment:
                    self.stdout.write(f"{name}={plan.environment[name]}")
            return
        if not Path(plan.argv[0]).is_file():
            raise CommandError(f"honcho is not installed next to {sys.executable}")
        if "sandbox" in plan.processes:
            self._warn_if_the_sandbox_forgot(Path(plan.environment["SANDBOX_STATE_FILE"]))
        self._prepare_run_dir()
        self.stdout.flush()
        sys.exit(self._run(plan, web_port))

    def _run(self, plan: Plan, web_port: int) -> int:
        """Run honcho in the foreground and return its exit code.

        Ctrl-C reaches honcho too (one process group): it stops every process, and this one
        waits for that."""
        honcho = subprocess.Popen(plan.argv, env=plan.environment)

        # A closed terminal (SIGHUP) or a process manager (SIGTERM) reaches this process only:
        # honcho is told to stop every process, as on Ctrl-C, so that none is left running.
        def stop(signum, frame):
            honcho.terminate()

        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        try:
            ready = wait_until_ready(web_port, honcho)
            if honcho.poll() is None:
                self._announce(web_port, ready)
            return honcho.wait()
        except KeyboardInterrupt:
            return honcho.wait()

    def _announce(self, web_port: int, ready: bool) -> None:
        base = f"http://127.0.0.1:{web_port}"
        rule = "=" * 72
        if ready:
            headline = f"  ready: {base}/admin/ (the console), API docs {base}/api/docs/"
        else:
            headline = f"  not every process answers yet (see the log above): {base}/admin/"
        lines = [rule, self.style.SUCCESS(headline)]
        if settings.DEBUG:
            lines.append(self.style.SUCCESS(f"  staff login: {DEV_USERNAME} / {DEV_PASSWORD}"))
        lines += ["  Ctrl-C stops everything.", rule]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _warn_if_the_sandbox_forgot(self, state_file: Path) -> None:
        paid = sandbox_paid_transfers_forgotten(state_file)
        if paid:
            self.stderr.write(
                f"warning: the sandbox has no state file ({state_file}), but the database "
                f"holds {paid} transfer(s) paid at a sandbox before: the sandbox starts empty "
                "and answers 404 for them (reversals end transfer_missing). Start from an "
                "empty database to avoid that."
            )

    def _describe(self, plan: Plan, web_port: int) -> None:
        base = f"http://127.0.0.1:{web_port}"
        self.stdout.write(f"starting {', '.join(plan.processes)}")
        if ROOT_WARNING in plan.environment.get("PYTHONWARNINGS", ""):
            self.stdout.write(
                "  note     running as root: Celery's warning about superuser privileges is "
                "silenced here (the worker accepts JSON only, never pickle); in production "
                "run the worker as an unprivileged user"
            )
        self.stdout.write(f"  admin    {base}/admin/")
        self.stdout.write(f"  health   {base}/healthz   metrics {base}/metrics")
        self.stdout.write(f"  openapi  {base}/api/schema/   docs {base}/api/docs/")
        if "sandbox" in plan.processes:
            self.stdout.write(
                f"  stripe   local sandbox at {settings.SANDBOX_URL} (no STRIPE_SECRET_KEY), "
                f"webhooks to {plan.environment['SANDBOX_WEBHOOK_URL']}, "
                f"state kept in {plan.environment['SANDBOX_STATE_FILE']}"
            )
        else:
            self.stdout.write(f"  stripe   {settings.STRIPE_API_BASE}")

    @staticmethod
    def _prepare_run_dir() -> None:
        # Prometheus' multiprocess files describe processes of one run only.
        shutil.rmtree(RUN_DIR / "prometheus", ignore_errors=True)
        (RUN_DIR / "prometheus").mkdir(parents=True)


def sandbox_paid_transfers_forgotten(state_file: Path) -> int:
    """Count the paid transfers a sandbox without its state file would not know.

    How many transfers the database says were paid at a sandbox that, having no state file,
    will not know them (0 when the file is there)."""
    if state_file.exists():
        return 0
    return SellerTransfer.objects.exclude(stripe_transfer_id="").count()


def wait_until_ready(web_port: int, honcho: subprocess.Popen) -> bool:
    """Wait for the web app and a worker to be ready, up to a timeout.

    Ready means the web app serves its login page and a worker answers a ping (their start-up
    logs are then behind us); ``False`` on timeout or if honcho stopped."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and honcho.poll() is None:
        if _web_serves(f"http://127.0.0.1:{web_port}/admin/login/") and _a_worker_answers():
            return True
        time.sleep(0.5)
    return False


def _web_serves(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=5) as response:
            return response.status == 200
    except OSError:  # not listening yet, or answering with an error
        return False


def _a_worker_answers() -> bool:
    try:
        return bool(celery_app.control.ping(timeout=0.5, limit=1))
    except Exception:  # noqa: BLE001 - a broker not reachable yet is "not yet"
        return False
