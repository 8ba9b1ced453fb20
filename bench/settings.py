"""Settings for the benchmark's Django sections: the demo project's, with bench URLs.

``bench/run.py`` sets ``BENCH_DATABASE_URL``: a temporary SQLite file, or a
PostgreSQL database it created for the run. It is the default database, so
that everything a sync writes (history rows included) goes to it.
"""

import os

import dj_database_url

from project.settings import *  # noqa: F403
from project.settings import STEPUP

DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "bench.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES = {"default": dj_database_url.parse(os.environ["BENCH_DATABASE_URL"])}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STEPUP = {**STEPUP, "POLICY_FILES": [], "RELOAD_INTERVAL": 1.0}
LOGGING = {"version": 1, "disable_existing_loggers": False, "loggers": {"stepup": {"level": "ERROR"}}}
