"""The audit spool: issued-card rows the database did not take, kept in local files until it does."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
from datetime import datetime
from pathlib import Path

from cds_service.store.schema import aware

log = logging.getLogger(__name__)

SPOOL_FIELDS = ("card_uuid", "service_id", "rule_id", "knowledge_version", "hook_instance", "patient_hash", "issued_at")


def _encode_row(row: dict) -> bytes:
    if row.get("patient_hash") is None:
        raise ValueError("an audit row is spooled only with its patient hash, never the patient id")
    out = {k: row[k] for k in SPOOL_FIELDS}
    out["issued_at"] = aware(row["issued_at"]).isoformat()
    return json.dumps(out, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def _decode_row(line: bytes) -> dict:
    data = json.loads(line)
    row = {k: data[k] for k in SPOOL_FIELDS}
    if not all(isinstance(row[k], str) for k in SPOOL_FIELDS):
        raise ValueError("not an audit row")
    row["issued_at"] = aware(datetime.fromisoformat(row["issued_at"]))
    return row


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditSpool:
    """Audit rows the database did not take, kept in local append-only files until it does.

    A process appends to one file of its own at a time (``audit-<database key>-<pid>-<random>.jsonl``,
    one JSON row per line, mode 0600) and holds an exclusive ``flock`` on it while it does; every batch
    is one ``write`` followed by ``fsync``. ``replay`` takes every file of this database it can lock:
    its own (closed first), or one left by a process that died (the kernel released its lock), inserts
    the rows (the card uuid is the primary key and a row already there is skipped, so a file replayed
    twice, e.g. after a crash between the commit and the unlink, adds nothing) and deletes the file.
    The database key (a hash of the URL without password, and schema) keeps two databases' rows apart.
    Rows hold the keyed patient hash, never the patient id (``_encode_row`` refuses).
    """

    MAX_FILE_ROWS = 5_000  # a new file after this many rows: replay reads a file at once

    def __init__(self, directory: str | Path, db_key: str):
        self.directory = Path(directory)
        self.db_key = db_key
        self._fd: int | None = None
        self._rows_in_file = 0
        self._pid = os.getpid()
        self._lock = threading.RLock()  # the current file is appended, closed and replayed by one thread at a time

    @property
    def pattern(self) -> str:
        return f"audit-{self.db_key}-*.jsonl"

    def _forked(self) -> None:
        if self._pid != os.getpid():  # the parent's file and lock are not this process's
            self._fd, self._rows_in_file, self._pid = None, 0, os.getpid()
            self._lock = threading.RLock()

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"audit-{self.db_key}-{os.getpid()}-{secrets.token_hex(4)}"
        temporary, final = self.directory / f"{name}.new", self.directory / f"{name}.jsonl"
        fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # locked before any replayer can see it (renamed after)
            os.rename(temporary, final)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, rows: list[dict]) -> None:
        """Append ``rows`` durably (write + fsync); OSError when the disk does not take them."""
        if not rows:
            return
        self._forked()
        data = b"".join(_encode_row(r) for r in rows)
        with self._lock:
            if self._fd is None or self._rows_in_file >= self.MAX_FILE_ROWS:
                self.close()
                self._fd = self._open()
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            except OSError:
                self.close()  # a torn line ends this file: the next batch starts a new one
                raise
            self._rows_in_file += len(rows)

    def close(self) -> None:
        """Stop appending to the current file (releases its lock, so it can be replayed)."""
        self._forked()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._rows_in_file = None, 0

    def files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob(self.pattern))
        except OSError:
            return []

    def replay(self, write_rows, budget_rows: int) -> tuple[int, bool]:
        """Write the rows of every file this process can lock, oldest name first, until ``budget_rows``;
        (rows replayed, whether files were left for lack of budget). Database errors propagate and the
        file stays."""
        with self._lock:
            return self._replay(write_rows, budget_rows)

    def _replay(self, write_rows, budget_rows: int) -> tuple[int, bool]:
        self.close()
        replayed = 0
        for path in self.files():
            if replayed >= budget_rows:
                return replayed, True
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # another process replayed it just now
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and still appending
                if os.fstat(fd).st_nlink == 0:
                    continue  # replayed and removed while we waited
                rows, torn = self._read(fd)
                if torn:
                    log.error(
                        "audit spool %s: %d unreadable line(s) skipped (a write cut short by a crash)", path.name, torn
                    )
                for start in range(0, len(rows), 1000):
                    write_rows(rows[start : start + 1000])
                path.unlink()
                _fsync_dir(self.directory)
                replayed += len(rows)
            finally:
                os.close(fd)
        return replayed, False

    @staticmethod
    def _read(fd: int) -> tuple[list[dict], int]:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        rows, torn = [], 0
        for line in b"".join(chunks).split(b"\n"):
            if not line.strip():
                continue
            try:
                rows.append(_decode_row(line))
            except (ValueError, KeyError, TypeError):
                torn += 1
        return rows, torn

    def status(self) -> dict:
        """Rows waiting in this directory: for this database, and for others (another URL or schema)."""
        mine = others = files = 0
        try:
            entries = list(self.directory.glob("audit-*.jsonl"))
        except OSError:
            entries = []
        for path in entries:
            try:
                count = path.read_bytes().count(b"\n")
            except OSError:
                continue
            files += 1
            if path.name.startswith(f"audit-{self.db_key}-"):
                mine += count
            else:
                others += count
        return {
            "directory": str(self.directory),
            "rows_waiting": mine,
            "files": files,
            "rows_waiting_for_other_databases": others,
        }
