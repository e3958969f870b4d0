"""The retry, staff retry API, wake-up and simulated-history paths run under other settings.

They run under the development and production settings modules, not only the tests' own: a
code path that reads a setting which only ``config.settings.test`` defines crashes there (an
``AttributeError`` on every failed attempt, say) while the rest of the suite passes.

Each module runs the slice in a pytest of its own, on the test database this run created, with
``tests/settings_slice_plugin.py`` giving the harness what it needs without Django settings.
Production gets the secrets it demands through the environment, as a deployment would: values
that are not the sandbox's public ones (which it refuses), with the Stripe calls going to the
sandbox like every test's.
"""

import ast
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import global_settings

ROOT = Path(__file__).resolve().parent.parent

SLICE = [
    "tests/test_transfer_retry.py",
    "tests/test_staff_retry_api.py",
    "tests/test_event_driven.py",
    # The simulator's histories of the audit's findings: every path they cross, as it runs in
    # development and in production.
    "tests/simulation/test_audit_findings.py",
]

# What every run needs from the environment: the suite's pacing and connection habits, set
# through the variables a deployment would use.
COMMON = {
    "DATABASE_CONN_MAX_AGE": "0",
    "STRIPE_RATE_LIMITS": "global=1000/s,default=1000/s,checks=1000/s",
    "REVERSAL_CONCURRENCY": "1",
    "LOG_LEVEL": "WARNING",
}

ENVIRONMENTS = {
    "config.settings.local": {},
    "config.settings.production": {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "false",
        # Not one of the sandbox's public values (production refuses those); the sandbox
        # fixture points every Stripe call at the test sandbox.
        "STRIPE_SECRET_KEY": "sk_test_settings_slice",
        "STRIPE_WEBHOOK_SECRET": "whsec_settings_slice",
        "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_settings_slice_connect",
        # The test client and the live server speak plain HTTP, as the app does behind a
        # TLS-terminating proxy that sets no X-Forwarded-Proto.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
    },
}


def run_slice(settings_module: str, *paths: str) -> subprocess.CompletedProcess:
    environment = {
        name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"
    }
    environment.update({**COMMON, **ENVIRONMENTS[settings_module], "PYTHONPATH": str(ROOT)})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.settings_slice_plugin",
            "-p",
            "no:cacheprovider",
            f"--ds={settings_module}",
            "--reuse-db",
            "-m",
            "not slow",
            "-q",
            *paths,
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a pytest process of its own per settings module
@pytest.mark.parametrize("settings_module", list(ENVIRONMENTS))
def test_the_retry_staff_api_and_wake_up_paths_pass_under(settings_module, django_db_setup):
    result = run_slice(settings_module, *SLICE)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


# --- The same rule, read from the source: quick, and it names the line. ------------------------

APPS = ("config", "devtools", "ledger", "marketplace", "payouts")


def assigned_names(path: Path) -> set[str]:
    """The upper-case names a settings module assigns at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return names


def settings_only_the_tests_define() -> set[str]:
    settings_dir = ROOT / "config" / "settings"
    elsewhere = set(dir(global_settings))
    for module in ("base", "local", "production"):
        elsewhere |= assigned_names(settings_dir / f"{module}.py")
    return assigned_names(settings_dir / "test.py") - elsewhere


def settings_reads(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` for each read of one of ``names`` from Django's settings:
    ``settings.NAME`` or ``getattr(settings, "NAME", …)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "settings"
            and node.attr in names
        ):
            found.append((node.lineno, node.attr))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr"}
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "settings"
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in names
        ):
            found.append((node.lineno, node.args[1].value))
    return found


def test_the_scanner_finds_a_planted_read_of_a_test_only_setting():
    planted = (
        "from django.conf import settings\n"
        "def wake():\n"
        "    if settings.CELERY_TASK_ALWAYS_EAGER:\n"
        "        return getattr(settings, 'CELERY_TASK_EAGER_PROPAGATES', False)\n"
        "    return settings.CELERY_BROKER_URL\n"
    )

    assert {
        "CELERY_TASK_ALWAYS_EAGER",
        "CELERY_TASK_EAGER_PROPAGATES",
    } <= settings_only_the_tests_define()
    assert settings_reads(planted, settings_only_the_tests_define()) == [
        (3, "CELERY_TASK_ALWAYS_EAGER"),
        (4, "CELERY_TASK_EAGER_PROPAGATES"),
    ]


def test_no_code_reads_a_setting_only_the_test_settings_define():
    names = settings_only_the_tests_define()
    found = [
        f"{path.relative_to(ROOT)}:{line} reads settings.{name}"
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "settings" not in path.relative_to(ROOT).parts
        for line, name in settings_reads(path.read_text(), names)
    ]

    assert found == []
