"""What authentication adds to a hook call in production: ``python -m bench.auth_cost``.

The benchmark's hook calls run with authentication off, as the no-op route does; a production server
(anything but loopback) verifies a JWT on every call: the signature (ES384 here, what the CDS Hooks
sandbox and most EHRs send) and the replay check, which records the token's ``jti`` in the database
so that no worker accepts it twice. Measured in-process on a SQLite store, each call with a fresh
token, CPU time of the calling thread: the whole ``Authenticator.verify`` and the replay record alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://ehr.bench.example"
AUDIENCE_BASE = "http://127.0.0.1:8080"
PATH = "/cds-services/jak-order-sign"


KID = "bench-1"


def signing_key():
    """(private key, trusted-client entry listing its public JWK): an EHR as the service's trusted client."""
    private_key = ec.generate_private_key(ec.SECP384R1())
    jwk = {
        **jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True),
        "kid": KID,
        "alg": "ES384",
        "use": "sig",
    }
    return private_key, {"iss": ISSUER, "jwks": {"keys": [jwk]}}


def token(private_key, audience: str = AUDIENCE_BASE + PATH) -> str:
    """A fresh ES384 token (its own jti) for one hook call, as an EHR signs each call."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private_key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def measure(calls: int = 300, warmup: int = 30) -> dict:
    """Median CPU ms of a whole verification and of the replay record alone, ``calls`` each."""
    from flask import Flask

    from bench.inprocess import summary
    from cds_service.store import Store
    from cds_service.web.auth import Authenticator, TrustedClient

    private_key, entry = signing_key()
    client = TrustedClient(**entry)
    tokens = [token(private_key) for _ in range(warmup + calls)]
    with tempfile.TemporaryDirectory(prefix="jak-bench-auth-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'auth.sqlite3'}")
        store.migrate()
        authenticator = Authenticator([client], store, public_base_url=AUDIENCE_BASE)
        verify, record = [], []
        with Flask("bench-auth").test_request_context(PATH, method="POST", base_url=AUDIENCE_BASE):
            for i, signed in enumerate(tokens):
                t0 = time.thread_time()
                authenticator.verify("Bearer " + signed)
                if i >= warmup:
                    verify.append(time.thread_time() - t0)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        for i in range(warmup + calls):
            t0 = time.thread_time()
            if not store.remember_jti(ISSUER, str(uuid.uuid4()), expires):
                raise RuntimeError("a fresh jti was refused as a replay")
            if i >= warmup:
                record.append(time.thread_time() - t0)
        store.dispose()
    return {"algorithm": "ES384", "database": "sqlite", "verify": summary(verify), "replay_record": summary(record)}


def line(result: dict) -> str:
    return (
        f"Authentication per call in production (not in the rows above: they run with it off): "
        f"{result['algorithm']} JWT verified and its jti recorded ({result['database']}) "
        f"{result['verify']['median_ms']:.2f} ms CPU, of which the replay record "
        f"{result['replay_record']['median_ms']:.2f} ms (medians of {result['verify']['n']})."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.auth_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    print(line(measure(args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
