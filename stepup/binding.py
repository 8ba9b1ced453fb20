"""What a single-request grant is bound to: the action, its attributes and, when asked, the request.

A ``max_age: 0`` policy is met only by a grant for exactly the request it
was asked for. :func:`attributes_digest` says what that request is: its
action, URL name and transaction attributes, and — for a view with
``bind_request`` — :func:`request_fingerprint`, a digest of its method, path,
query string and body.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any


def attributes_digest(
    action: str | None, url_name: str | None, attributes: Mapping[str, Any], request: str | None = None
) -> str:
    """A stable digest of what one request does; single-request grants are bound to it.

    :param request: the request's :func:`request_fingerprint`, when the view
        binds its grants to the whole request rather than to its attributes.
    """
    what: dict[str, Any] = {
        "action": action,
        "url": url_name,
        "attrs": {str(k): text(v) for k, v in attributes.items()},
    }
    if request is not None:
        what["request"] = request
    canonical = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def text(value: Any) -> str:
    """An attribute value as the digest counts it: its ``str``."""
    try:
        return str(value)
    except ValueError:  # an int past Python's int-to-decimal limit: its hex has none
        return hex(value)


_NOT_BOUND = frozenset({"csrfmiddlewaretoken"})


def request_fingerprint(request: Any) -> str:
    """A digest of everything ``request`` asks for: method, path, query string and body.

    What a view with ``bind_request`` binds its single-request grants to, so
    that a grant for "5000 to bob" can't send 5000 to anyone else even when
    the account is not one of the view's attributes. Form bodies count field
    by field (the CSRF token and the order of fields don't), JSON bodies by
    their parsed value (key order and spacing don't), uploads by name, size
    and content, anything else byte for byte. A DRF ``Request`` counts by its
    parsed ``data``.
    """
    http = getattr(request, "_request", request)
    if http is not request:  # DRF has read the body already
        body: Any = _canonical(request.data)
    else:
        body = _http_body(http)
    what = {
        "method": http.method,
        "path": http.path,
        "query": {k: http.GET.getlist(k) for k in sorted(http.GET)},
        "body": body,
    }
    try:
        canonical = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
    except (RecursionError, ValueError):
        # A body nested too deeply to write out: no grant can ever match it (fail closed).
        return "unbindable:" + secrets.token_hex(16)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _http_body(http: Any) -> Any:
    content_type = (http.content_type or "").lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = _canonical(http.POST)
        files = {
            name: [[f.name, f.size, _file_digest(f)] for f in http.FILES.getlist(name)]
            for name in sorted(http.FILES)
        }
        return {"fields": fields, "files": files}
    raw = http.body
    if content_type == "application/json":
        try:
            return {"json": json.loads(raw)}
        except (RecursionError, ValueError):
            pass
    return {"bytes": hashlib.sha256(raw).hexdigest()}


def _canonical(data: Any) -> Any:
    getlist = getattr(data, "getlist", None)
    if callable(getlist):  # a QueryDict: every value of every field
        return {k: getlist(k) for k in sorted(data) if k not in _NOT_BOUND}
    if isinstance(data, Mapping):
        return {str(k): v for k, v in data.items() if k not in _NOT_BOUND}
    return data


def _file_digest(upload: Any) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()
