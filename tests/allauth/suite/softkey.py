"""A software passkey for the API-level WebAuthn tests: registers with allauth, signs assertions.

It builds exactly what a browser hands the server (base64url JSON of
``PublicKeyCredential``) from fido2's own data types and a P-256 key, so the
server side — allauth's ``Fido2Server`` — checks it as it checks a real one.
The browser test uses Chromium's virtual authenticator instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.mfa.webauthn.internal.auth import WebAuthn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorData,
    CollectedClientData,
)

RP_ID = "testserver"
ORIGIN = "https://testserver"
FLAG = AuthenticatorData.FLAG


@dataclass
class SoftKey:
    rp_id: str = RP_ID
    origin: str = ORIGIN
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    counter: int = 0

    @property
    def rp_id_hash(self) -> bytes:
        return hashlib.sha256(self.rp_id.encode()).digest()

    def registration(self) -> dict[str, Any]:
        """A ``none``-attestation registration response, as allauth stores it in ``data["credential"]``."""
        public = ES256.from_cryptography_key(self.key.public_key())
        attested = AttestedCredentialData.create(b"\0" * 16, self.credential_id, public)
        auth_data = AuthenticatorData.create(self.rp_id_hash, FLAG.UP | FLAG.UV | FLAG.AT, 0, attested)
        client_data = CollectedClientData.create("webauthn.create", os.urandom(32), self.origin)
        return {
            "id": websafe_encode(self.credential_id),
            "rawId": websafe_encode(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": websafe_encode(client_data),
                "attestationObject": websafe_encode(AttestationObject.create("none", auth_data, {})),
            },
            "clientExtensionResults": {},
        }

    def register(self, user: Any, name: str = "Laptop") -> Authenticator:
        """Store this key as the user's allauth WebAuthn authenticator, as allauth's add flow would."""
        return WebAuthn.add(user, name, self.registration()).instance

    def assertion(
        self, options: dict[str, Any], *, verified: bool = True, origin: str | None = None
    ) -> dict[str, Any]:
        """Sign the challenge of ``options`` (``publicKey`` request options, as JSON)."""
        public_key = options.get("publicKey", options)
        challenge = websafe_decode(public_key["challenge"])
        self.counter += 1
        flags = FLAG.UP | FLAG.UV if verified else FLAG.UP
        auth_data = AuthenticatorData.create(self.rp_id_hash, flags, self.counter)
        client_data = CollectedClientData.create("webauthn.get", challenge, origin or self.origin)
        signature = self.key.sign(auth_data + client_data.hash, ec.ECDSA(hashes.SHA256()))
        return {
            "id": websafe_encode(self.credential_id),
            "rawId": websafe_encode(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": websafe_encode(client_data),
                "authenticatorData": websafe_encode(auth_data),
                "signature": websafe_encode(signature),
            },
            "clientExtensionResults": {},
        }


def as_json(data: Any) -> Any:
    """``data`` through JSON, as it travels between browser and server."""
    return json.loads(json.dumps(data, default=str))
