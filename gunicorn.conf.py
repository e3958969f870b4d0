"""gunicorn settings for the web app (``gunicorn config.wsgi``; read from the working directory).

Command-line flags override these. Its own logs (errors, access lines) are JSON lines like the
app's, so that one log pipeline parses everything.
"""

import os

from config.log_format import JSON_FORMATTER

bind = f"{os.environ.get('WEB_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Requests never wait on Stripe for long (webhooks answer before any Stripe call; the staff
# retry waits for one call of STRIPE_TIMEOUT), so a worker stuck this long is broken.
timeout = 60
graceful_timeout = 30
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": JSON_FORMATTER,
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
