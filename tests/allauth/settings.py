"""The test settings with ``allauth.mfa`` as the only source of factors, for ``test_on_allauth.py``.

The same policy file and URLs as ``tests.settings``; the factors come from
allauth's authenticators instead of django-otp devices (django-otp stays
installed: stepup needs its middleware, and no test here creates a device).
"""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [
    *INSTALLED_APPS,  # noqa: F405
    "allauth",
    "allauth.account",
    "allauth.mfa",
]
MIDDLEWARE = [
    *MIDDLEWARE,  # noqa: F405
    "allauth.account.middleware.AccountMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
STEPUP = {**STEPUP, "FACTOR_SOURCES": ["allauth"]}  # noqa: F405
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
