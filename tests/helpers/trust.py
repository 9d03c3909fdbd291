"""Helpers for the trust tests (auth, storage, feedback, hostile input): keys, tokens, apps, databases."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import create_engine, text

from cds_service.web.app import create_app
from cds_service.config import Settings
from cds_service.store import Store
from fixtures.builders import TODAY

ISS = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
BASE = "http://localhost"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: object
    extra: dict = field(default_factory=dict)

    @property
    def jwk(self) -> dict:
        if self.alg.startswith("ES"):
            key = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            key = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**key, "kid": self.kid, "alg": self.alg, "use": "sig", **self.extra}


def ec_key(kid: str = "ec-1", alg: str = "ES384") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return SigningKey(kid, alg, ec.generate_private_key(curve))


def rsa_key(kid: str = "rsa-1", alg: str = "RS384") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwks(*keys: SigningKey) -> dict:
    return {"keys": [k.jwk for k in keys]}


def claims(aud: str, iss: str = ISS, **overrides) -> dict:
    now = int(time.time())
    body = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def token(key: SigningKey, aud: str, *, jku: str | None = None, header: dict | None = None, **claim_overrides) -> str:
    headers = {"kid": key.kid, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    headers.update(header or {})
    return jwt.encode(claims(aud, **claim_overrides), key.private, algorithm=key.alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsafe_token(alg: str, payload: dict, secret: bytes = b"", kid: str = "ec-1") -> str:
    """HS256 or 'none' tokens, built by hand (libraries rightly refuse to make some of these)."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signing_input = f"{head}.{body}".encode()
    if alg == "none":
        return f"{head}.{body}."
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def write_clients(path: Path, clients: list[dict]) -> str:
    path.write_text(json.dumps(clients))
    return str(path)


def trust_settings(tmp_path: Path, clients: list[dict] | None = None, **changes) -> Settings:
    values = dict(evaluation_date=TODAY.isoformat(), database_url=f"sqlite:///{tmp_path / 'trust.sqlite3'}",
                  auth="auto", fhir_timeout=1.0)
    if clients is not None:
        values["trusted_clients_file"] = write_clients(tmp_path / "clients.json", clients)
    values.update(changes)
    return Settings(**values)


def make_app(settings: Settings, knowledge=None, **kwargs):
    return create_app(settings, knowledge=knowledge, **kwargs)


# --- databases ------------------------------------------------------------------------------------

def postgres_url() -> str:
    return os.environ.get("JAK_CDS_TEST_POSTGRES_URL") or DEFAULT_PG


def postgres_available(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def require_postgres() -> str:
    """The test PostgreSQL URL; skip when unreachable unless JAK_CDS_REQUIRE_POSTGRES is set (then fail)."""
    url = postgres_url()
    if not postgres_available(url):
        if os.environ.get("JAK_CDS_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at {url.split('@')[-1]} is unreachable and JAK_CDS_REQUIRE_POSTGRES is set")
        pytest.skip(f"PostgreSQL at {url.split('@')[-1]} is unreachable")
    return url


def drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


class StoreFactory:
    """Makes Stores on one database: a tmp SQLite file, or a private PostgreSQL schema."""

    def __init__(self, kind: str, tmp_path: Path):
        self.kind = kind
        self.stores: list[Store] = []
        self.spool_dir = tmp_path / "audit-spool"        # not ./jak-cds-audit-spool, the server-database default
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
            self.schema = None
        else:
            self.url = require_postgres()
            self.schema = f"jak_test_{uuid.uuid4().hex[:12]}"

    def __call__(self, patient_hash_key: str | None = None) -> Store:
        store = Store(self.url, patient_hash_key, schema=self.schema, spool_dir=self.spool_dir)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.dispose()
        if self.schema:
            drop_schema(self.url, self.schema)


def feedback_body(card_uuid: str, outcome: str = "overridden", code: str = "patient-declined",
                  display: str = "Patient declined", suggestion: str | None = None, comment: str | None = None) -> dict:
    item = {"card": card_uuid, "outcome": outcome, "outcomeTimestamp": "2026-03-01T10:00:00Z"}
    if outcome == "overridden":
        item["overrideReason"] = {"reason": {"system": "https://jak-cds.example/override", "code": code,
                                             "display": display}}
        if comment:
            item["overrideReason"]["userComment"] = comment
    elif suggestion:
        item["acceptedSuggestions"] = [{"id": suggestion}]
    return {"feedback": [item]}
