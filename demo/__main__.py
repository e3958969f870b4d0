import argparse
import os
import sys

import django


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()
    from demo.story import DEFAULT_TIMEOUT, DemoFailed, default_web_url, run_story

    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Pay and refund an order of three sellers through the running service.",
    )
    parser.add_argument("--web-url", default=default_web_url(), help="the running web app")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for each stage (default %(default)s)",
    )
    options = parser.parse_args(argv)
    try:
        run_story(web_url=options.web_url, timeout=options.timeout, out=sys.stdout)
    except DemoFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
