"""The demo on ``allauth.mfa``: the same project and policies, with factors from allauth's authenticators.

Run it with ``make demo-allauth`` (or ``DJANGO_SETTINGS_MODULE=project.settings_allauth``
before any ``manage.py`` command). ``seed_demo`` then gives the users allauth
TOTP authenticators and recovery codes instead of django-otp devices, and a
user adds or removes factors on allauth's own pages (``/accounts/2fa/``).
The database is a file of its own (``db-allauth.sqlite3``), so the two demos
never share users or devices.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, INSTALLED_APPS, MIDDLEWARE, STEPUP

INSTALLED_APPS = [*INSTALLED_APPS, "allauth", "allauth.account", "allauth.mfa"]
MIDDLEWARE = [*MIDDLEWARE, "allauth.account.middleware.AccountMiddleware"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ROOT_URLCONF = "project.urls_allauth"

if not os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "db-allauth.sqlite3")),
        }
    }

STEPUP = {
    **STEPUP,
    "FACTOR_SOURCES": ["allauth"],
    "ENROLL_URL": "mfa_index",  # allauth's page to add an authenticator app, recovery codes or a passkey
}

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "django-stepup demo (allauth)"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_EMAIL_VERIFICATION = "none"
