"""gunicorn settings for the demo project: several worker processes sharing PostgreSQL and Redis.

Run (see docs/operations.md)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepup_demo \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
    DJANGO_DEBUG=0 .venv/bin/gunicorn -c project/gunicorn.conf.py

Every worker is its own process with its own compiled policy set; a policy
change committed anywhere is announced through Redis and enforced by every
worker from its next request on. Without REDIS_URL each worker polls the
database every ``STEPUP["RELOAD_INTERVAL"]`` seconds instead. Command-line
options (``--bind``, ``--workers``, …) override these values.
"""

import os

wsgi_app = "project.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Each worker imports Django itself: no database connection is shared across fork.
preload_app = False
timeout = 30
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn >= 27 opens a control socket at one fixed path per user; several servers on one
# machine (the demo next to the scale tests) would fight over it. Older versions ignore this.
control_socket_disable = True
