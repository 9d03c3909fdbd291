"""The HTTP session for every outbound call (EHR FHIR servers, EHR JWKS URLs).

requests, left to itself, looks up a ~/.netrc login for the host on every call and, when it finds one,
puts it in the Authorization header: an EHR's server would get the machine's netrc password (instead of,
for the FHIR server, the token the EHR gave us). A session also keeps every cookie a server sets and sends
it back on later calls: a session cookie the EHR's FHIR server gave one clinician's call would go out with
the next clinician's, or another tenant's. It also scans every environment variable for proxy settings on
every call. ``OutboundSession`` sends only the credentials we set, keeps no cookie, and reads the
environment's proxy and CA settings once per server (NO_PROXY still decided per host).

Its connections can be cut from another thread (``Sockets``, ``sending_for``): a read timeout applies
to each ``recv`` on its own, so a server that drips one byte a second is never "late" and would hold the
calling thread for as long as it likes. The FHIR fallback fetch (``fhir_client``) hands each request
thread a ``Sockets``; every socket that thread connects, or takes from the keep-alive pool, is recorded
there, and ``Sockets.cut()`` shuts them down (``shutdown(2)`` wakes a thread blocked in ``recv``, TLS
handshake included, where ``close()`` would not), so the thread ends at once with an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from contextlib import contextmanager
from http.cookiejar import DefaultCookiePolicy
from typing import TypeGuard
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _KeepHeaders(AuthBase):
    """Session auth that changes nothing: with it, requests never reads netrc."""

    def __call__(self, request):
        return request


class Sockets:
    """The sockets one request thread is using, so that another thread can cut them (``cut``).

    Each is kept as a duplicate file descriptor: shutting that down ends the connection for every
    descriptor of it, and, unlike the connection's own socket object, it cannot be closed (and its number
    reused for another connection) behind our back, nor detached by a TLS wrap during the handshake.
    """

    __slots__ = ("_done", "_held", "_lock", "cut_off")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self.cut_off = False
        self._done = False

    def adopt(self, sock) -> None:
        try:
            held = socket.socket(fileno=os.dup(sock.fileno()))
        except (OSError, ValueError):  # already closed: nothing to cut
            return
        with self._lock:
            if not self.cut_off and not self._done:
                self._held.append(held)
                return
        _shut(held)  # cut before it got here: end it now
        held.close()

    def cut(self) -> None:
        """Shut down every connection of this thread; later ones are shut as soon as they open."""
        with self._lock:
            if self._done:
                return
            self.cut_off = True
            for held in self._held:
                _shut(held)

    def release(self) -> None:
        """The thread is done: forget its connections (kept-alive ones go on in the pool, uncut)."""
        with self._lock:
            self._done = True
            held, self._held = self._held, []
        for sock in held:
            sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected any more
        sock.shutdown(socket.SHUT_RDWR)


_sending = threading.local()


@contextmanager
def sending_for(sockets: Sockets):
    """Within this block, connections this thread opens or reuses are recorded in ``sockets``."""
    _sending.sockets = sockets
    try:
        yield sockets
    finally:
        _sending.sockets = None
        sockets.release()


def _adopt(sock) -> None:
    sockets = getattr(_sending, "sockets", None)
    if sockets is not None and sock is not None:
        sockets.adopt(sock)


class _CuttableHTTPConnection(HTTPConnection):
    def _new_conn(self):
        sock = super()._new_conn()  # connected, before any TLS handshake
        _adopt(sock)
        return sock


class _CuttableHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _adopt(sock)
        return sock


class _CuttableHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CuttableHTTPConnection

    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        _adopt(getattr(conn, "sock", None))  # a kept-alive connection (None: it connects later, in _new_conn)
        return conn


class _CuttableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CuttableHTTPSConnection

    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        _adopt(getattr(conn, "sock", None))
        return conn


class _OriginOnly(logging.Filter):
    """urllib3 logs URLs and paths (a FHIR query carries the patient id): keep only scheme, host and port.
    At WARNING when a connection is cut while the headers arrive ("Failed to parse headers (url=...)"), at
    DEBUG for every request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(_names_a_path(a) for a in record.args):
            record.args = tuple(_origin_of(a) if _names_a_path(a) else a for a in record.args)
        return True


def _names_a_path(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and ("://" in value or value.startswith("/"))


def _origin_of(url: str) -> str:
    if url.startswith("/"):
        return "/…"
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
    except ValueError:
        return "(a URL)"


for _name in ("urllib3.connection", "urllib3.connectionpool", "urllib3.response"):
    logging.getLogger(_name).addFilter(_OriginOnly())


_CUTTABLE_POOLS = {"http": _CuttableHTTPPool, "https": _CuttableHTTPSPool}


class CuttableAdapter(HTTPAdapter):
    """requests' adapter whose connections are recorded in the calling thread's ``Sockets``, if it has one
    (direct, or through an HTTP(S) proxy; a SOCKS proxy's connections are not cuttable)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _CUTTABLE_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _CUTTABLE_POOLS
        return manager


# No domain is allowed a cookie: none is kept from an answer, none is sent with a call, so every outbound
# call carries only the credentials the call itself has.
_NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])


class OutboundSession(requests.Session):
    MAX_SERVERS = 64

    def __init__(self, connections: int = 10):
        super().__init__()
        self.auth = _KeepHeaders()
        self.cookies.set_policy(_NO_COOKIES)
        adapter = CuttableAdapter(pool_connections=4, pool_maxsize=connections)  # requests keeps ten by default
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self._environment: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or verify is not None or cert is not None:  # not how this service calls: no caching
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream)  # NO_PROXY depends on the host
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._environment) >= self.MAX_SERVERS:
                self._environment.clear()
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}
