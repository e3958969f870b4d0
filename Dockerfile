# The service's one image: web (gunicorn), Celery worker, Celery beat and the Stripe sandbox all
# run from it with different commands (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change reuses this layer. The
# project's packages themselves are imported from /app (PYTHONPATH), not installed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .

# The admin's static files, served by whitenoise. Production settings refuse to load without
# their secrets, so this one build step gets throwaway values that never reach the image.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    STRIPE_SECRET_KEY=sk_test_collectstatic_only \
    STRIPE_WEBHOOK_SECRET=whsec_collectstatic_only \
    python manage.py collectstatic --no-input

RUN useradd --system --uid 10001 --home-dir /app payouts \
    && mkdir -p /app/var \
    && chown payouts /app/var
USER payouts

EXPOSE 8000
CMD ["gunicorn", "config.wsgi"]
