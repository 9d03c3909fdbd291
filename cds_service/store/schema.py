"""The database schema: tables, numbered migrations, and the UTC instants stored in them.

Schema changes are numbered migrations recorded in ``jak_schema_version``; they run once, under a lock
(``Store.migrate``: a PostgreSQL advisory lock, the SQLite write lock), so workers starting together do not race.
Append only: never edit a migration that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, text
from sqlalchemy.engine import Connection

metadata = MetaData()

schema_version = Table(
    "jak_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
meta = Table(
    "jak_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
issued_card = Table(
    "jak_issued_card",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False),
    Column("rule_id", String(200), nullable=False, index=True),
    Column("knowledge_version", String(128), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("patient_hash", String(64), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("language", String(16), nullable=True),  # migration 2: the card's language (en, nl, nb)
)
feedback = Table(
    "jak_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),  # JSON list of suggestion uuids
    Column("override_system", String(300), nullable=True),
    Column("override_code", String(200), nullable=True),
    Column("override_display", String(300), nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
seen_jti = Table(
    "jak_seen_jti",
    metadata,
    Column("iss", String(300), primary_key=True),
    Column("jti", String(300), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


def _migration_1(conn: Connection) -> None:
    # the tables as shipped in version 1 (issued_card without ``language``, added by migration 2)
    metadata.create_all(conn, tables=[meta, feedback, seen_jti])
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index)
        for c in issued_card.columns
        if c.name != "language"
    ]
    version_1 = Table(issued_card.name, MetaData(), *columns)
    version_1.create(conn)  # with its rule_id index (the columns keep index=True)


def _migration_2(conn: Connection) -> None:
    """Issue 25: the language each card was issued in (rows written before stay NULL: English)."""
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)  # text() is not translated
    quote = conn.dialect.identifier_preparer
    table = (quote.quote_schema(schema) + "." if schema else "") + quote.quote(issued_card.name)
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN language VARCHAR(16)"))


# Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _migration_1), (2, _migration_2)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """UTC, always: SQLite keeps no offset, so every stored instant is normalised first."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


MAX_COMMENT = 2000  # characters of a feedback comment kept


@dataclass
class FeedbackRow:
    card_uuid: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestions: list[str] | None = None
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None
