"""Settings for the django-stepup demo project (SQLite by default)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_email",  # email codes (the "email" factor); mail goes to the console
    "django_otp_webauthn",  # passkeys and security keys (the "webauthn" factor)
    "simple_history",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from static files: no CDN
    "stepup",
    "project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "project.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # stepup's pages in the browser's language (en, de, fr)
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "stepup.middleware.StepUpMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

# Several processes or hosts: DATABASE_URL (e.g. postgres://user@db:5432/stepup) and
# REDIS_URL (e.g. redis://cache:6379/0); see docs/operations.md. Without them: SQLite and
# the local-memory cache, which suit one process only.
if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES["default"] = dj_database_url.parse(
        os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True
    )
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["REDIS_URL"],
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "stepup-demo"),
        # A cache that hangs must not hang requests: stepup falls back to the database.
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
# The languages stepup ships catalogs for; LocaleMiddleware picks one from Accept-Language.
# (The demo's own pages are in English only.)
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# A strict Content-Security-Policy on every response (project/csp.py): only this site's own
# static files, no inline scripts or styles anywhere. Images may also be data: URIs, which
# the Swagger UI stylesheet uses for its icons.
DEMO_CSP = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "demo:home"
LOGOUT_REDIRECT_URL = "login"

OTP_TOTP_ISSUER = "django-stepup demo"

# Passkeys: browsers accept a domain name, not an IP address, as the relying party id, so open
# the demo at http://localhost:8000 (not 127.0.0.1) to use one. See project/demo/webauthn.py.
OTP_WEBAUTHN_RP_ID = os.environ.get("DEMO_WEBAUTHN_RP_ID", "localhost")
OTP_WEBAUTHN_RP_NAME = "Acme Billing (django-stepup demo)"
OTP_WEBAUTHN_ALLOWED_ORIGINS = ["http://localhost:8000"]
OTP_WEBAUTHN_HELPER_CLASS = "project.demo.webauthn.LocalhostWebAuthnHelper"
# Keep device keys out of the admin even for staff who passed step-up.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

STEPUP = {
    "POLICY_FILES": [BASE_DIR / "fixtures" / "stepup" / "policies.yaml"],
    "DEFAULT_MAX_AGE": 300,
    "TRUSTED_PROXIES": [],
    # ENROLL_URL is left out: step-up sends a user with no second factor to stepup's own
    # device pages ("stepup:devices"), which the demo uses as its Security page.
}
# PostgreSQL without Redis: STEPUP_NOTICES=database carries change notices by LISTEN/NOTIFY.
if os.environ.get("STEPUP_NOTICES"):
    STEPUP["NOTICES"] = os.environ["STEPUP_NOTICES"]

# The demo's REST API (/api/): session and token clients, guarded by the same policies.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Acme Billing API (django-stepup demo)",
    "DESCRIPTION": "Billing and transfers guarded by step-up policies, and stepup's own endpoints.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "PREPROCESSING_HOOKS": ["drf_spectacular.hooks.preprocess_exclude_path_format"],  # no .json twins
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"stepup": {"handlers": ["console"], "level": "INFO"}},
}

# The demo prints mail (email codes) to the console it runs in.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "stepup-demo@acme.example"
