"""Settings of the processes the scale tests start: the test project's, on the environment's services.

``DATABASE_URL`` and, where a scenario shares a cache, ``REDIS_URL`` come from the test (a fresh PostgreSQL
database, and Redis under a key prefix of its own); the ``SCALE_*`` variables
set what one scenario needs. Only the scale tests use this module.
"""

import os

import dj_database_url

from tests.settings import *  # noqa: F403
from tests.settings import STEPUP

DATABASES = {
    "default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True)
}
# Redis when the test gives one (a cache that hangs must not hang requests: stepup falls
# back to the database); tests that need no shared cache, such as the race test, run without.
CACHES = (
    {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", ""),
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    if os.environ.get("REDIS_URL")
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "tests.scale.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# 0 turns django-otp's per-device back-off off, so that every parallel guess is checked
# and counted by stepup's per-user counter; the per-device throttle has its own scenario.
OTP_TOTP_THROTTLE_FACTOR = int(os.environ.get("SCALE_OTP_THROTTLE_FACTOR", "0"))

STEPUP = {
    **STEPUP,
    "RELOAD_INTERVAL": float(os.environ.get("SCALE_RELOAD_INTERVAL", "1")),
    "RESYNC_INTERVAL": float(os.environ.get("SCALE_RESYNC_INTERVAL", "30")),
    "USER_FAILURE_LIMIT": int(os.environ.get("SCALE_USER_FAILURE_LIMIT", "1000")),
    "CACHE": os.environ.get("SCALE_STEPUP_CACHE", "default") or None,
    "NOTICES": os.environ.get("SCALE_STEPUP_NOTICES", "cache"),
    "GRANT_CACHE": os.environ.get("SCALE_GRANT_CACHE", "1") == "1",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"stepup": {"handlers": ["console"], "level": "INFO"}},
}
