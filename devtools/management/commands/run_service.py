"""Start the whole service in the foreground with honcho: web, Celery worker, Celery beat, and,
when no STRIPE_SECRET_KEY is configured, the local Stripe sandbox sending signed webhooks to the
web app. Ctrl-C stops them all. The last step of ``make run``."""

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

PROCFILE = Path(settings.BASE_DIR) / "Procfile.dev"
# Run-time files (beat's schedule, Prometheus' per-process counters); ignored by git.
RUN_DIR = Path(settings.BASE_DIR) / "var"
DEFAULT_WEB_PORT = 8000
# Development only: the demo's reversals and retries happen within seconds, not minutes.
# Whatever the environment or .env sets wins.
DEV_INTERVALS = {"REVERSAL_CHECK_INTERVAL": "5s", "TRANSFER_RETRY_CHECK_INTERVAL": "5s"}


@dataclass(frozen=True)
class Plan:
    processes: list[str]
    argv: list[str]
    environment: dict[str, str]


def plan_service(*, web_port: int, environ: dict[str, str]) -> Plan:
    """What to start and with which environment; pure, so it can be checked without starting."""
    python = sys.executable
    environment = {
        **DEV_INTERVALS,
        **environ,
        "PYTHON": python,
        "PYTHONUNBUFFERED": "1",
        "WEB_PORT": str(web_port),
        "BEAT_SCHEDULE": str(RUN_DIR / "celerybeat-schedule"),
        "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
    }
    processes = ["web", "worker", "beat"]
    if getattr(settings, "STRIPE_USES_LOCAL_SANDBOX", False):
        sandbox = urlsplit(settings.SANDBOX_URL)
        processes.append("sandbox")
        environment.update(
            SANDBOX_HOST=sandbox.hostname or "127.0.0.1",
            SANDBOX_PORT=str(sandbox.port or 80),
            SANDBOX_WEBHOOK_URL=f"http://127.0.0.1:{web_port}/webhooks/stripe/",
            # The app accepts the first of its webhook secrets (whsec_local_sandbox by default).
            SANDBOX_WEBHOOK_SECRET=settings.STRIPE_WEBHOOK_SECRETS[0],
            SANDBOX_CONNECT_WEBHOOK_URL=f"http://127.0.0.1:{web_port}/webhooks/stripe/connect/",
            SANDBOX_CONNECT_WEBHOOK_SECRET=settings.STRIPE_CONNECT_WEBHOOK_SECRETS[0],
        )
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
        plan = plan_service(web_port=web_port, environ=dict(os.environ))
        self._describe(plan, web_port)
        if dry_run:
            self.stdout.write(" ".join(plan.argv))
            for name in ("REVERSAL_CHECK_INTERVAL", "TRANSFER_RETRY_CHECK_INTERVAL"):
                self.stdout.write(f"{name}={plan.environment[name]}")
            for name in ("SANDBOX_WEBHOOK_URL", "SANDBOX_WEBHOOK_SECRET"):
                if name in plan.environment:
                    self.stdout.write(f"{name}={plan.environment[name]}")
            return
        if not Path(plan.argv[0]).is_file():
            raise CommandError(f"honcho is not installed next to {sys.executable}")
        self._prepare_run_dir()
        self.stdout.flush()
        os.execve(plan.argv[0], plan.argv, plan.environment)

    def _describe(self, plan: Plan, web_port: int) -> None:
        base = f"http://127.0.0.1:{web_port}"
        self.stdout.write(f"starting {', '.join(plan.processes)}")
        self.stdout.write(f"  admin    {base}/admin/")
        self.stdout.write(f"  health   {base}/healthz   metrics {base}/metrics")
        self.stdout.write(f"  openapi  {base}/api/schema/")
        if "sandbox" in plan.processes:
            self.stdout.write(
                f"  stripe   local sandbox at {settings.SANDBOX_URL} (no STRIPE_SECRET_KEY), "
                f"webhooks to {plan.environment['SANDBOX_WEBHOOK_URL']}"
            )
        else:
            self.stdout.write(f"  stripe   {settings.STRIPE_API_BASE}")

    @staticmethod
    def _prepare_run_dir() -> None:
        # Prometheus' multiprocess files describe processes of one run only.
        shutil.rmtree(RUN_DIR / "prometheus", ignore_errors=True)
        (RUN_DIR / "prometheus").mkdir(parents=True)
