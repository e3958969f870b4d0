"""The benchmarks stay runnable.

- No bench module can shadow a module the project imports: they run as ``python -m
  bench.<name>``, and none is named like a package or module at the project's root (an app),
  a dependency or the standard library. (``bench/ledger.py`` once stood in for the ``ledger``
  app whenever ``bench/`` was on the path, and every gunicorn worker of the webhook bench
  failed to boot.)
- Every bench runs end to end at its smallest size (``slow``: they start the sandbox, workers
  and gunicorn as processes), on a scratch database of its own, exits 0 and prints its table of
  numbers.
"""

import functools
import importlib.metadata
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import harness

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Smoke:
    """A bench's smallest honest run: its arguments, the header of the table of numbers it
    prints (cells two spaces apart), and other lines it must print (regular expressions)."""

    args: str
    header: str
    lines: tuple[str, ...] = ()


# Every bench (a module of bench/ that runs as a script) has its smoke run here.
SMOKE_RUNS = {
    "drain": Smoke(
        "--rows 20 --workers 1",
        "workers  endpoint  calls  rate/s  of 25/s  overall/s  max in 1 s  429s  exactly once",
    ),
    "check_reads": Smoke(
        "--transfers 20 --before none",
        "day  code  transfers.retrieve  transfers.list  events.list  calls  Stripe leg s  total s",
    ),
    "memory": Smoke(
        "--rows 20",
        "rows  reversed  wall s  rows/s  peak RSS (VmHWM)  command's peak_rss_kb  ru_maxrss  "
        "spawner peak RSS",
        (r"^reversed 20 of 20 in ",),
    ),
    "tick_cost": Smoke(
        "--sizes 1000 --runs 3 --warmup 1",
        "settled rows  claim_due median  p95  raw SQL median  p95  SELECT exec  plan",
    ),
    "ledger_cost": Smoke(
        "--moves 20 --transfers 200",
        "measure  value",
        (r"ledger_check --no-stripe, 200 transfers, s\s+\d", r"200 transfers, 0 break"),
    ),
    # Two gunicorn workers must boot (bench.trivial_wsgi, the whole app behind it) and answer
    # every request of the four scenarios.
    "webhook_intake": Smoke(
        "--requests 20 --seconds 10 --warmup 1 --gunicorn-workers 2 --client-processes 1 "
        "--client-threads 2",
        "scenario  req/s  p50 ms  p99 ms  of WSGI  of Django view",
        tuple(
            rf"^\s*{re.escape(scenario)}: 20 ok in .* other outcomes none$"
            for scenario in ("trivial WSGI", "trivial Django view")
            + ("customer.created", "charge.succeeded")
        )
        # The events the workers stored: one warm-up and 20 timed requests of each type.
        + (r"^inbox: charge\.succeeded ignored 21, customer\.created ignored 21$",),
    ),
    "latency": Smoke(
        "--orders 1 --spacing 0",
        "path  orders  p50  p90  max",
        (r"payment -> last transfer\s+1\s", r"refund -> last reversal\s+1\s"),
    ),
    "audit_export": Smoke(
        "--rows 300",
        "rows in the book and trail  lines exported  MiB sent  seconds  rows/s  RSS before (MiB)  "
        "peak RSS (MiB)  growth (MiB)",
    ),
    "payout_reads": Smoke(
        "--sizes 20",
        "transfers  calls  sandbox log  lines  matched  unmatched  adds up  s",
        (r"^\s+20\s",),
    ),
    "scale": Smoke(
        "--sizes 300 --runs 2 --retention-rows 100",
        "transfers  scrape  console  admin list  needs attention  search by id  webhook stored  "
        "claim 50  ledger_check incr.  ledger_check full",
        (r"^\s+300\s", r"^\s+100\s+100\s"),
    ),
}


# -- no bench module shadows a module ---------------------------------------------------------


def project_names(root: Path) -> set[str]:
    """What ``import <name>`` finds at the project's root: its packages (the apps, the sandbox,
    the tests…) and its modules."""
    return {path.parent.name for path in root.glob("*/__init__.py")} | {
        path.name.removesuffix(".py") for path in root.glob("*.py")
    }


@functools.cache
def installed_names() -> frozenset[str]:
    """The top-level modules of the installed distributions (read once: it walks them all)."""
    return frozenset(importlib.metadata.packages_distributions())


def imported_elsewhere(root: Path) -> set[str]:
    """Every top-level name a bench module must not take: the project's, its dependencies'
    (``stripe``, ``celery``, ``django``…) and the standard library's."""
    return project_names(root) | installed_names() | set(sys.stdlib_module_names)


def shadowing_bench_modules(root: Path, taken: Iterable[str]) -> list[str]:
    """The modules and packages of ``root/bench`` named like one of ``taken``."""
    taken = set(taken)
    names = [path.name for path in (root / "bench").glob("*.py")]
    names += [path.parent.name for path in (root / "bench").glob("*/__init__.py")]
    return sorted(name for name in names if name.removesuffix(".py") in taken)


def test_no_bench_module_is_named_like_a_module_the_project_imports():
    assert shadowing_bench_modules(ROOT, imported_elsewhere(ROOT)) == []


def test_the_names_a_bench_must_not_take_include_every_app_and_dependency():
    names = imported_elsewhere(ROOT)

    apps = {"config", "devtools", "ledger", "marketplace", "payouts", "stripe_sandbox", "demo"}
    assert apps | {"tests", "manage"} <= names
    assert {"django", "rest_framework", "celery", "stripe", "psycopg", "gunicorn"} <= names


def planted_project(root: Path, *, apps: Iterable[str], benches: Iterable[str]) -> Path:
    for app in apps:
        (root / app).mkdir()
        (root / app / "__init__.py").write_text("")
    (root / "bench").mkdir()
    (root / "bench" / "__init__.py").write_text("")
    for bench in benches:
        (root / "bench" / bench).write_text('"""A bench."""\n')
    return root


@pytest.mark.parametrize(
    "planted",
    ["ledger.py", "marketplace.py", "console.py", "payouts.py", "config.py", "tests.py"],
)
def test_a_bench_module_named_like_an_app_is_caught(tmp_path, planted):
    # `console` is an app the project does not have yet: the check reads the tree it is given.
    apps = ["config", "console", "ledger", "marketplace", "payouts", "tests"]
    root = planted_project(tmp_path, apps=apps, benches=["drain.py", "harness.py", planted])

    assert shadowing_bench_modules(root, project_names(root)) == [planted]


@pytest.mark.parametrize("planted", ["stripe.py", "celery.py", "django.py", "json.py"])
def test_a_bench_module_named_like_a_dependency_or_the_standard_library_is_caught(
    tmp_path, planted
):
    root = planted_project(tmp_path, apps=["ledger"], benches=["scale.py", planted])

    assert shadowing_bench_modules(root, imported_elsewhere(root)) == [planted]


def test_a_bench_package_named_like_an_app_is_caught(tmp_path):
    root = planted_project(tmp_path, apps=["ledger", "payouts"], benches=["drain.py"])
    (root / "bench" / "payouts").mkdir()
    (root / "bench" / "payouts" / "__init__.py").write_text("")

    assert shadowing_bench_modules(root, project_names(root)) == ["payouts"]


# -- every bench runs at its smallest size ----------------------------------------------------


def bench_scripts(bench: Path) -> set[str]:
    """The modules of bench/ that run as a script.

    The rest are imported by them (the harness, the WSGI app of the webhook bench) or started
    by one of them (a ``…_worker`` process, which its bench's smoke run starts too)."""
    return {
        path.stem
        for path in bench.glob("*.py")
        if re.search(r'^if __name__ == "__main__":', path.read_text(), flags=re.M)
        and not path.stem.endswith("_worker")
    }


def test_every_bench_has_a_smoke_run():
    assert bench_scripts(BENCH) == set(SMOKE_RUNS)


def test_a_bench_without_a_smoke_run_is_caught(tmp_path):
    root = planted_project(tmp_path, apps=[], benches=["harness.py"])
    (root / "bench" / "drain.py").write_text('if __name__ == "__main__":\n    main()\n')
    (root / "bench" / "queue_depth.py").write_text('if __name__ == "__main__":\n    main()\n')

    assert bench_scripts(root / "bench") - set(SMOKE_RUNS) == {"queue_depth"}


def header_printed(output: str, header: str) -> bool:
    """Whether a line of ``output`` is a table header with these cells (two spaces apart in
    ``header``), in this order."""
    cells = r"\s+".join(re.escape(cell) for cell in re.split(r"\s{2,}", header.strip()))
    return re.search(rf"^\s*{cells}\s*$", output, flags=re.M) is not None


def test_a_missing_header_is_caught():
    printed = "  rows  reversed  wall s\n  ----  --------  ------\n    20        20     1.1\n"

    assert header_printed(printed, "rows  reversed  wall s")
    assert not header_printed(printed, "rows  reversed  wall s  rows/s")
    assert not header_printed(printed, "reversed  rows")


@pytest.mark.slow  # starts the sandbox, workers, gunicorn and Celery as processes
@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_the_bench_runs_end_to_end_at_its_smallest_size(name):
    smoke = SMOKE_RUNS[name]
    # A scratch database of this run's own: another bench, another engineer's smoke run of the
    # same bench, and the test database all keep theirs.
    db = f"payouts_bench_smoke_{name}_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *smoke.args.split(), "--db", db],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        harness.drop_database(db)  # left behind only if the bench was killed
    output = done.stdout + done.stderr
    print(f"bench.{name}: {time.monotonic() - started:.1f} s")

    assert done.returncode == 0, output[-4000:]
    assert header_printed(done.stdout, smoke.header), done.stdout[-4000:]
    missing = [line for line in smoke.lines if not re.search(line, done.stdout, flags=re.M)]
    assert missing == [], done.stdout[-4000:]
