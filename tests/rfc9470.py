"""RFC 9470 step-up challenges read strictly, by the grammar of RFC 7235 (``WWW-Authenticate``)."""

from __future__ import annotations

import re

# RFC 7235, section 4.1 and 2.1:
#   WWW-Authenticate = 1#challenge
#   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#   auth-param  = token BWS "=" BWS ( token / quoted-string )
#   token       = 1*tchar ; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#                                   "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
#   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext      = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text ; quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
#   BWS = OWS = *( SP / HTAB ); the list's "#" separates elements by OWS "," OWS.
TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = rf"{TCHAR}+"
QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
AUTH_PARAM = rf"{TOKEN}[ \t]*=[ \t]*(?:{TOKEN}|{QUOTED})"
CHALLENGE = re.compile(rf"(?P<scheme>{TOKEN})(?: +(?P<params>{AUTH_PARAM}(?:[ \t]*,[ \t]*{AUTH_PARAM})*))?")
PARAM = re.compile(rf"(?P<name>{TOKEN})[ \t]*=[ \t]*(?P<value>{TOKEN}|{QUOTED})")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme and auth-params of a single RFC 7235 challenge; fails on anything else.

    RFC 9470 adds: the scheme is ``Bearer``, ``error`` is the token
    ``insufficient_user_authentication``, ``max_age`` a non-negative integer,
    ``acr_values`` a space-separated list. Parameter names are
    case-insensitive and must not repeat (RFC 7235, section 2.1).
    """
    match = CHALLENGE.fullmatch(header)
    assert match, f"not an RFC 7235 challenge: {header!r}"
    params: dict[str, str] = {}
    for param in PARAM.finditer(match["params"] or ""):
        name, value = param["name"].lower(), param["value"]
        assert name not in params, f"{name} repeats in {header!r}"
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name] = value
    return match["scheme"], params


def rfc9470_params(header: str) -> dict[str, str]:
    """The parameters of an RFC 9470 step-up challenge, checked against RFC 9470, section 3."""
    scheme, params = parse_challenge(header)
    assert scheme == "Bearer"
    assert params["error"] == "insufficient_user_authentication"
    assert re.fullmatch(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*", params["error_description"])  # RFC 6750, 3
    assert re.fullmatch(r"0|[1-9][0-9]*", params["max_age"])
    assert set(params) <= {"error", "error_description", "max_age", "acr_values"}
    return params
