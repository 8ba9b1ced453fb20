"""The demo's Content-Security-Policy: one strict header on every response.

Django 5.2 has no built-in CSP (6.0 has ``ContentSecurityPolicyMiddleware``),
so this small middleware sets ``settings.DEMO_CSP``. A view that sets its own
header keeps its directives (stepup's verify view sends ``frame-ancestors
'none'``); the demo's fill in the rest, so no response goes out without
``default-src 'self'``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def parse(header: str) -> dict[str, str]:
    """``"default-src 'self'; img-src data:"`` -> ``{"default-src": "'self'", "img-src": "data:"}``."""
    directives: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives.setdefault(name.lower(), value.strip())
    return directives


def merged(policy: Mapping[str, str], existing: str | None) -> str:
    """``policy``, with the directives a view already set taking precedence."""
    directives = {**policy, **parse(existing or "")}
    return "; ".join(f"{name} {value}".strip() for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response[HEADER] = merged(settings.DEMO_CSP, response.get(HEADER))
        return response
