"""Settings for the benchmark's Django sections: the demo project's, with bench URLs.

``bench/run.py`` sets ``BENCH_DATABASE_URL``: a temporary SQLite file, or a
PostgreSQL database it created for the run; ``BENCH_REDIS_URL`` puts the
cache (and the policy-change notices) on Redis. It is the default database, so
that everything a sync writes (history rows included) goes to it.
"""

import os

import dj_database_url

from project.settings import *  # noqa: F403
from project.settings import STEPUP

DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
ROOT_URLCONF = "bench.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Persistent connections, as a deployment under load has them (no connect per request).
DATABASES = {"default": dj_database_url.parse(os.environ["BENCH_DATABASE_URL"], conn_max_age=60)}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("BENCH_REDIS_URL"):  # the gunicorn runs: notices between the workers through Redis
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BENCH_REDIS_URL"],
            "KEY_PREFIX": os.environ.get("BENCH_REDIS_PREFIX", "stepup-bench"),
        }
    }
# BENCH_NOTICES=database (the gunicorn runs without Redis): PostgreSQL's LISTEN/NOTIFY carries the notices.
STEPUP = {
    **STEPUP,
    "POLICY_FILES": [],
    "RELOAD_INTERVAL": 1.0,
    "NOTICES": os.environ.get("BENCH_NOTICES", "cache"),
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "loggers": {"stepup": {"level": "ERROR"}}}
