"""The replay check's memory of token ids (``iss``, ``jti``): in the database, or in this process while it is down."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cds_service.store.health import RETRY_AFTER_S, DatabaseHealth, StoreUnavailable
from cds_service.store.schema import aware, seen_jti, utcnow

log = logging.getLogger(__name__)

JTI_MIN_RETENTION = timedelta(hours=1)
JTI_PRUNE_INTERVAL_S = 60.0  # expired token ids are deleted at most this often per process
JTI_MEMORY_MAX = 50_000  # token ids accepted without the database, per process (about 10 MB)
JTI_FALLBACKS = ("memory", "refuse")
_INSERT_JTI = seen_jti.insert()
_PRUNE_JTI = seen_jti.delete().where(seen_jti.c.expires_at < bindparam("now"))


class ReplayIds:
    """Token ids seen by this service, so that a token is used once (``Store.remember_jti``).

    ``engine``: the request path's engine (``Store.fast_engine``); ``wake``: called when an id is kept in
    memory, so that the audit writer writes it back once the database is back (``write_back``)."""

    def __init__(
        self, engine: Callable[[], Engine], is_sqlite: bool, health: DatabaseHealth, fallback: str = "memory"
    ) -> None:
        if fallback not in JTI_FALLBACKS:
            raise ValueError(f"jti_fallback must be one of {JTI_FALLBACKS}, not {fallback!r}")
        self._engine = engine
        self._dialect = sqlite_dialect if is_sqlite else pg_dialect
        self.health = health
        self.fallback = fallback
        self.memory_max = JTI_MEMORY_MAX
        self.prune_interval_s = JTI_PRUNE_INTERVAL_S
        self._next_prune = 0.0  # time.monotonic() after which the next call prunes
        self._lock = threading.Lock()
        # (iss, jti) -> (kept in the database until, usable until): accepted while the database was down
        self.memory: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        self.stats = {"accepted_from_memory": 0, "written_back": 0, "replays_found_on_write_back": 0}
        self.wake: Callable[[], None] = lambda: None

    def remember(self, iss: str, jti: str, exp: datetime | None) -> bool:
        """Record a token id; False if it was seen before (a replay). Kept at least one hour.

        Every authenticated hook call comes here, so it is one INSERT in its own transaction: the primary
        key (iss, jti) refuses a second use in any worker. Expired ids are deleted in the same transaction
        at most every ``prune_interval_s`` per process (a delete and a savepoint on every call cost
        as much again as the insert).

        When the database cannot be used (``DatabaseHealth``): with ``fallback="memory"`` the id is
        checked against and kept in this process's memory (at most ``memory_max`` ids, each until its
        token expires) and written to the database by the audit writer once it is back, where a second use
        elsewhere in the meantime is found and logged; with ``"refuse"``, or when that memory is full,
        ``StoreUnavailable`` (503).
        """
        now = utcnow()
        key = (iss[:300], jti[:300])
        if key in self.memory:
            return False  # accepted here while the database was down
        keep_until = max(filter(None, [aware(exp) if exp else None, now + JTI_MIN_RETENTION]))
        if self.health.should_try():
            started = time.monotonic()
            prune = started >= self._next_prune
            try:
                with self._engine().begin() as conn:
                    if prune:
                        conn.execute(_PRUNE_JTI, {"now": now})
                    conn.execute(_INSERT_JTI, {"iss": key[0], "jti": key[1], "expires_at": keep_until})
            except IntegrityError:
                self.health.ok()
                return False  # a replay (the prune, if any, is retried next call)
            except SQLAlchemyError as exc:
                self.health.failed(exc, took=time.monotonic() - started)
            else:
                if prune:
                    self._next_prune = time.monotonic() + self.prune_interval_s
                self.health.ok()
                return True
        return self._remember_in_memory(key, keep_until, aware(exp) if exp else keep_until, now)

    def _remember_in_memory(
        self, key: tuple[str, str], keep_until: datetime, usable_until: datetime, now: datetime
    ) -> bool:
        if self.fallback == "refuse":
            raise StoreUnavailable("the replay check needs the database, which is unavailable", RETRY_AFTER_S)
        with self._lock:
            if key in self.memory:
                return False
            if len(self.memory) >= self.memory_max:
                for old in [k for k, (_, until) in self.memory.items() if until < now]:
                    del self.memory[old]  # expired tokens: refused by exp whatever we remember
                if len(self.memory) >= self.memory_max:
                    raise StoreUnavailable("too many token ids wait for the database", RETRY_AFTER_S)
            first = not self.memory
            self.memory[key] = (keep_until, usable_until)
            self.stats["accepted_from_memory"] += 1
        if first:
            log.warning(
                "replay check from memory: the database is unavailable, token ids are kept in this "
                "process (pid %d) and written to the database when it is back",
                os.getpid(),
            )
        self.wake()
        return True

    def pending(self) -> bool:
        """Are ids kept in memory waiting to be written back?"""
        return bool(self.memory)

    def write_back(self) -> bool:
        """The audit writer, once the database is back: write the token ids accepted from memory. An id
        the database already holds was used twice (here during the outage, and elsewhere): logged as a
        replay. Returns whether ids remain (never: all or an exception)."""
        now = utcnow()
        with self._lock:
            items = list(self.memory.items())
        saved: list[tuple[str, str]] = []
        for start in range(0, len(items), 500):
            chunk = [(k, v) for k, v in items[start : start + 500] if v[1] >= now]
            saved.extend(k for k, v in items[start : start + 500] if v[1] < now)  # expired: nothing to keep
            if not chunk:
                continue
            statement = (
                self._dialect.insert(seen_jti)
                .values([{"iss": k[0], "jti": k[1], "expires_at": v[0]} for k, v in chunk])
                .on_conflict_do_nothing(index_elements=["iss", "jti"])
                .returning(seen_jti.c.iss, seen_jti.c.jti)
            )
            with self._engine().begin() as conn:
                inserted = {tuple(r) for r in conn.execute(statement)}
            for k, _ in chunk:
                if k not in inserted:
                    self.stats["replays_found_on_write_back"] += 1
                    log.warning(
                        "REPLAY during the database outage: token id %r of issuer %s was accepted from "
                        "memory here and was also used elsewhere",
                        k[1],
                        k[0],
                    )
            self.stats["written_back"] += len(chunk)
            saved.extend(k for k, _ in chunk)
        with self._lock:
            for k in saved:
                self.memory.pop(k, None)
        if saved:
            log.info("replay check: %d token id(s) kept in memory written to the database", len(saved))
        return False
