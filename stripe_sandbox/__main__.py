"""``python -m stripe_sandbox``: serve the sandbox in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .sandbox import Sandbox
from .server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sandbox", description="A stateful fake of the Stripe API subset."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--webhook-url", help="where to POST signed events")
    parser.add_argument("--webhook-secret", help="whsec_... used to sign events")
    parser.add_argument("--seed", type=int, default=0, help="seed for random fault injection")
    parser.add_argument("--webhook-workers", type=int, default=4)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    options = parser.parse_args(argv)
    if options.webhook_url and not options.webhook_secret:
        parser.error("--webhook-url needs --webhook-secret")

    sandbox = Sandbox(
        seed=options.seed,
        webhook_url=options.webhook_url,
        webhook_secret=options.webhook_secret,
        webhook_workers=options.webhook_workers,
    )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
