"""Database fault drills: deploy/dbdrill.py loaded as a module, the hook call they send, and a bounded wait.

The drill cluster fixtures (``drill_cluster``, ``drill_db``) are in tests/conftest.py.
"""
from __future__ import annotations

import importlib.util
import sys
import time

from cds_service.config import REPO_ROOT
from fixtures.builders import draft_order
from tests.helpers.hooks import make_request
from tests.helpers.records import AD, record

_spec = importlib.util.spec_from_file_location("jak_dbdrill", REPO_ROOT / "deploy" / "dbdrill.py")
dbdrill = importlib.util.module_from_spec(_spec)
sys.modules["jak_dbdrill"] = dbdrill            # dataclasses look their module up here
_spec.loader.exec_module(dbdrill)


def hook_body(patient: str = "p1") -> dict:
    return make_request(record(age=65, extra=[AD, draft_order("Rinvoq 30 mg", 30)]), patient_id=patient)


def wait_until(predicate, timeout: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
