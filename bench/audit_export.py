"""The audit export's peak memory as the history grows: it must stay flat (a streamed response
over server-side cursors), not grow with the rows exported.

Fills a scratch database by SQL with ``scale.py``'s history (settled transfers of three
sellers, three audit events each, the book's entries and lines for all of it) until the export
holds each size in ``--rows`` (transfer events plus book entries; each size adds to the last).
At each size a fresh process (``config.settings.local`` without DEBUG) sets Django up, reads
its own resident memory, then runs ``GET /api/admin/audit/?format=…`` through the real view as
a superuser and reads every byte of the streamed body, counting the lines; it reports its
``VmHWM`` (peak resident memory, from ``/proc/self/status``) and the growth over what it held
before the export.

    .venv/bin/python -m bench.audit_export [--rows 100000 1000000] [--format jsonl] [--keep]

Target: the same peak, within a few MiB, at every size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import harness, scale

# Orders written before the ratio of exported rows to orders is measured.
FIRST_ORDERS = 1000
EXPORTED = (
    "SELECT (SELECT count(*) FROM payouts_sellertransferevent) + "
    "(SELECT count(*) FROM ledger_entry)"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--db", default="payouts_bench_audit", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--export-only", metavar="DB", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.export_only:
        return export_and_report(options.export_only, options.format)

    harness.print_machine()
    results = []
    with harness.scratch_database(options.db, keep=options.keep) as db, harness.connect(db) as conn:
        fill = scale.Fill(conn, datetime.now(UTC))
        orders = FIRST_ORDERS
        fill.orders(1, orders)
        per_order = conn.execute(EXPORTED).fetchone()[0] / orders
        for target in sorted(options.rows):
            started = time.monotonic()
            wanted = int(target / per_order) + 1
            while orders < wanted:
                upto = min(orders + scale.ORDERS_PER_CHUNK, wanted)
                fill.orders(orders + 1, upto)
                orders = upto
            rows = conn.execute(EXPORTED).fetchone()[0]
            while rows < target:  # the ratio is an average: top up to the size asked
                fill.orders(orders + 1, orders + 100)
                orders += 100
                rows = conn.execute(EXPORTED).fetchone()[0]
            fill.finish()
            print(f"filled to {rows:,} exported rows in {time.monotonic() - started:.0f} s")
            results.append({"rows in the book and trail": rows, **measure(db, options.format)})

    print()
    print(f"summary: GET /api/admin/audit/?format={options.format}, one fresh process per size")
    headers = list(results[0])
    harness.print_table(headers, [[result[h] for h in headers] for result in results])
    return 0


def measure(db: str, output: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.audit_export", "--export-only", db, "--format", output],
        cwd=harness.ROOT,
        env=harness.service_environment(db),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {report}")
    return {
        "lines exported": f"{report['lines']:,}",
        "MiB sent": f"{report['bytes'] / 2**20:.0f}",
        "seconds": f"{report['seconds']:.1f}",
        "rows/s": f"{report['lines'] / report['seconds']:,.0f}",
        "RSS before (MiB)": f"{report['rss_before_kb'] / 1024:.1f}",
        "peak RSS (MiB)": f"{report['peak_kb'] / 1024:.1f}",
        "growth (MiB)": f"{(report['peak_kb'] - report['rss_before_kb']) / 1024:.1f}",
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def export_and_report(db: str, output: str) -> int:
    """In the fresh process: the export through the real view, every byte read."""
    scale.django_setup(db)
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIRequestFactory, force_authenticate

    from payouts.http.views import AuditExportView

    user, _ = get_user_model().objects.get_or_create(
        username="bench-auditor", defaults={"is_staff": True, "is_superuser": True}
    )
    view = AuditExportView.as_view()

    def get(**query):
        request = APIRequestFactory().get("/api/admin/audit/", {"format": output, **query})
        force_authenticate(request, user=user)
        return view(request)

    # An empty range first, so that what any first request loads is in the baseline.
    assert not b"".join(get(**{"from": "2999-01-01"}).streaming_content).count(b"\n") > 1
    rss_before = _status_kb("VmRSS")
    started = time.monotonic()
    response = get()
    lines = size = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.monotonic() - started
    report = {
        "lines": lines,
        "bytes": size,
        "seconds": seconds,
        "rss_before_kb": rss_before,
        "peak_kb": _status_kb("VmHWM"),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
