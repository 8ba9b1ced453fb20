"""The demo's own settings (``project.settings``) for its tests, on a throwaway database.

Only ``tests/demo/`` runs on these: ``test_on_demo.py`` starts that child pytest. Everything
else in ``tests/`` runs on the library's own test project (``tests.settings``).
"""

from project.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
OTP_WEBAUTHN_RP_ID = "testserver"  # the test client's host
LOGGING = {"version": 1, "disable_existing_loggers": False}
