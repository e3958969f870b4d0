"""Django settings, one module per environment.

Settings modules: ``local`` (development, the default of manage.py and Celery), ``test``
(pytest) and ``production`` (the default of WSGI/ASGI). All read the environment through
``base``."""
