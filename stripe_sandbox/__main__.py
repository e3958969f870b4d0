"""``python -m stripe_sandbox``: serve the sandbox in the foreground until SIGINT/SIGTERM.

The first line on stdout is ``stripe_sandbox listening on http://…`` (parents
started with ``--port 0`` read the address from it). Start-up notes, such as
whether the state is kept in a file or only in memory, go to stderr.
``--help`` lists the control API (the ``control`` module's documentation).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import control
from .persistence import StateFileError
from .sandbox import Sandbox
from .server import make_server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sandbox",
        description="A stateful fake of the Stripe API subset.",
        epilog=control.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--webhook-url", help="where to POST the platform's signed events")
    parser.add_argument("--webhook-secret", help="whsec_... used to sign platform events")
    parser.add_argument(
        "--connect-webhook-url", help="where to POST connected accounts' signed events"
    )
    parser.add_argument("--connect-webhook-secret", help="whsec_... used to sign Connect events")
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="keep the state in this JSON file: loaded at start, saved after every change "
        "and at shutdown (without it, state lives in memory and is forgotten on restart)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for random fault injection")
    parser.add_argument("--webhook-workers", type=int, default=4)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def _state_note(sandbox: Sandbox) -> str:
    if sandbox.state_file is None:
        return (
            "stripe_sandbox: state is kept in memory only and is forgotten on restart "
            "(use --state-file PATH to keep it)"
        )
    return (
        f"stripe_sandbox: state is saved to {sandbox.state_file.path} after every change "
        f"({sandbox.restored} objects loaded from it)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.webhook_url and not options.webhook_secret:
        parser.error("--webhook-url needs --webhook-secret")
    if options.connect_webhook_url and not options.connect_webhook_secret:
        parser.error("--connect-webhook-url needs --connect-webhook-secret")

    try:
        sandbox = Sandbox(
            seed=options.seed,
            webhook_url=options.webhook_url,
            webhook_secret=options.webhook_secret,
            webhook_workers=options.webhook_workers,
            connect_webhook_url=options.connect_webhook_url,
            connect_webhook_secret=options.connect_webhook_secret,
            state_file=options.state_file,
        )
    except StateFileError as exc:
        print(f"stripe_sandbox: {exc}", file=sys.stderr)
        return 2
    print(_state_note(sandbox), file=sys.stderr, flush=True)
    try:
        server = make_server(
            sandbox, options.host, options.port, log_stream=None if options.quiet else sys.stderr
        )
    except OSError as exc:
        print(
            f"stripe_sandbox: cannot listen on {options.host}:{options.port}: {exc}",
            file=sys.stderr,
        )
        sandbox.close()
        return 1
    _serve(sandbox, server)
    return 0


def _serve(sandbox: Sandbox, server) -> None:
    # serve_forever runs on a thread because server.shutdown() must not be
    # called from the thread that is serving; the main thread only waits.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    # Parents started with --port 0 read the real address from this line.
    print(f"stripe_sandbox listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass

    print("stripe_sandbox shutting down", file=sys.stderr, flush=True)
    sandbox.close()
    server.shutdown()
    server.close_connections()
    server.server_close()
    thread.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
