"""Passkeys in the demo: the relying party is ``localhost``, on whatever port the demo is served.

WebAuthn needs a domain name as its relying party id (browsers refuse an IP
address such as ``127.0.0.1``) and a secure context, which ``http://localhost``
is. The demo is served on a port chosen at start (``make demo PORT=8001``,
the browser tests' free port), so the origin a browser reports can't be
listed in advance: this helper also accepts ``http://localhost:<port>`` for
the port this very request came in on. A real deployment lists its origins
in ``OTP_WEBAUTHN_ALLOWED_ORIGINS`` and needs none of this.
"""

from __future__ import annotations

from django_otp_webauthn.helpers import WebAuthnHelper


class LocalhostWebAuthnHelper(WebAuthnHelper):
    def get_allowed_origins(self) -> list[str]:
        origins = list(super().get_allowed_origins())
        host, _, port = self.request.get_host().partition(":")
        if host == self.get_relying_party_domain() == "localhost" and port.isdigit():
            origins.append(f"http://localhost:{port}")
        return origins
