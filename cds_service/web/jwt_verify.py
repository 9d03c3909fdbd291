"""Verification of the JWT a CDS client sends (see cds_service.web.auth for the rules it enforces)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import jwt
from flask import request

from cds_service.web.trusted_clients import JwksCache, TrustedClient

ALLOWED_ALGS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
CLOCK_SKEW = 60  # seconds
MAX_TOKEN_BYTES = 16 * 1024
MAX_KEY_OBJECTS = 256  # distinct JWKs kept as key objects (trusted clients' keys, a few each)

MIN_RSA_BITS = 2048


def _rsa_bits(jwk: dict) -> int:
    n = jwk.get("n")
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big").bit_length()
    except ValueError:
        return 0


class AuthError(Exception):
    """The token is refused; the message is for the log (never contains the token)."""


# --- verification -------------------------------------------------------------------------------


def _unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) read once without checking anything: enough to choose the issuer and its key."""
    try:
        parts = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(f"malformed JWT ({type(exc).__name__})") from None
    header, claims = parts.get("header"), parts.get("payload")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("malformed JWT")
    return header, claims


class Authenticator:
    def __init__(
        self,
        clients: list[TrustedClient],
        store,
        public_base_url: str | None = None,
        jwks_cache: JwksCache | None = None,
        clock=time.time,
    ):
        self.clients = {c.iss: c for c in clients}
        self.store = store
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.jwks = jwks_cache or JwksCache()
        self.clock = clock
        self._key_objects: dict[tuple[str, str], jwt.PyJWK] = {}

    def audience(self) -> str:
        if self.public_base_url:
            return self.public_base_url + request.path
        return request.base_url

    def _key_for(self, client: TrustedClient, header: dict, alg: str) -> jwt.PyJWK:
        kid, jku = header.get("kid"), header.get("jku")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the JWT header has no kid")
        if jku is not None:
            if not isinstance(jku, str) or client.jku is None or jku != client.jku:
                raise AuthError(f"jku is not the allowed JWKS URL of issuer {client.iss}")
            keys = self.jwks.keys(jku, kid)
        elif client.jwks is not None:
            keys = client.jwks.keys
        else:
            assert client.jku is not None  # TrustedClient._has_keys: a client has jku or jwks
            keys = self.jwks.keys(client.jku, kid)
        matches = [k for k in keys if k.get("kid") == kid]
        if not matches:
            raise AuthError(f"no key with kid {kid!r} for issuer {client.iss}")
        key = matches[0]
        if key.get("alg") not in (None, alg):
            raise AuthError(f"key {kid!r} is for {key.get('alg')}, the token says {alg}")
        if key.get("use") not in (None, "sig"):
            raise AuthError(f"key {kid!r} is not a signing key")
        if alg in EC_CURVE and (key.get("kty") != "EC" or key.get("crv") != EC_CURVE[alg]):
            raise AuthError(f"key {kid!r} does not match algorithm {alg}")
        if alg.startswith("RS"):
            if key.get("kty") != "RSA":
                raise AuthError(f"key {kid!r} does not match algorithm {alg}")
            if _rsa_bits(key) < MIN_RSA_BITS:
                raise AuthError(f"RSA key {kid!r} is shorter than {MIN_RSA_BITS} bits")
        return self._usable_key(key, alg, kid)

    def _usable_key(self, key: dict, alg: str, kid: str) -> jwt.PyJWK:
        """The key object for a JWK, built once per distinct key content (about 70 us each time otherwise):
        a rotated key with the same kid has other content and is built anew."""
        content = (alg, json.dumps(key, sort_keys=True))
        found = self._key_objects.get(content)
        if found is None:
            try:
                found = jwt.PyJWK(key, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise AuthError(f"key {kid!r} is unusable ({type(exc).__name__})") from None
            if len(self._key_objects) >= MAX_KEY_OBJECTS:
                self._key_objects.clear()
            self._key_objects[content] = found
        return found

    def verify(self, authorization: str | None) -> dict:
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("the Authorization header is not a Bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("the token is too long")
        header, unverified = _unverified(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise AuthError(f"algorithm {alg!r} is not accepted")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError("the issuer is not a trusted client")
        key = self._key_for(client, header, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience(),
                issuer=client.iss,
                leeway=CLOCK_SKEW,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_iat": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused ({type(exc).__name__}: {exc})") from None
        now = self.clock()
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or iat > now + CLOCK_SKEW:
            raise AuthError("iat is in the future")
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise AuthError(f"tenant does not match issuer {client.iss}")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 300:
            raise AuthError("jti missing or invalid")
        exp = datetime.fromtimestamp(float(claims["exp"]) + CLOCK_SKEW, tz=UTC)
        if not self.store.remember_jti(client.iss, jti, exp):
            raise AuthError("jti was already used (replay)")
        return claims
