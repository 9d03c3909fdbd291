"""A FHIR server that fails on purpose, for fault drills of the fallback fetch. Development only.

    jak-cds fault-fhir-server --mode drip                     # every query answered 1 byte a second
    jak-cds fault-fhir-server --mode ok --fault Observation=hang fixtures/fhir/<bundle>.json

or in a test: ``with FaultFhirServer(record, modes={"Observation": "drip"}) as fhir: ... fhir.url``.

It listens on 127.0.0.1 (an ephemeral port unless told), serves ``<base>/Type?params`` and
``<base>/Type/id`` over ``record`` (executed by ``cds_service.fhir_query``, as the fixture server does)
and answers each query by its mode, chosen by the resource type it reads (``modes``), else ``mode``:

- ``ok``: the search result, as a FHIR server would;
- ``hang``: accepts the connection, reads the request and never answers;
- ``500``: HTTP 500 with an OperationOutcome;
- ``invalid-json``: HTTP 200, ``application/fhir+json``, a body cut off in the middle;
- ``huge``: HTTP 200 with a 50 MB body (a valid Bundle, streamed), past any sane cap;
- ``drip``: the whole answer, status line included, one byte a second (``drip_interval``): every
  single read of the client succeeds, so a per-read timeout never fires;
- ``outcome``: HTTP 200 with an OperationOutcome instead of a Bundle (what some servers do on error);
- ``reset``: reads the request, then resets the connection (RST, no answer).

``stats`` counts connections, requests per mode and the most in flight at once (per-server limits).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cds_service.fhir import query as fhir_query
from cds_service.fhir.values import query_type

MODES = ("ok", "hang", "500", "invalid-json", "huge", "drip", "outcome", "reset")
FAULTS = tuple(m for m in MODES if m != "ok")
HUGE_BYTES = 50 * 1024 * 1024
_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "fault drill"}],
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="fault-fhir-handler", daemon=True
        )
        thread.start()


class FaultFhirServer:
    def __init__(
        self,
        record: list[dict] | None = None,
        mode: str = "ok",
        modes: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        base: str = "/fhir",
        drip_interval: float = 1.0,
    ) -> None:
        for m in [mode, *(modes or {}).values()]:
            if m not in MODES:
                raise ValueError(f"unknown fault mode {m!r}; one of {', '.join(MODES)}")
        self.record = list(record or ())
        self.mode, self.modes = mode, dict(modes or {})
        self.base = "/" + base.strip("/") if base.strip("/") else ""
        self.drip_interval = drip_interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.in_flight = 0
        self.stats = {"connections": 0, "requests": 0, "max_in_flight": 0, **{m: 0 for m in MODES}}
        self.paths: list[str] = []
        self.authorizations: set[str] = set()  # Authorization headers received
        self._server = _Server((host, port), self._handler())
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}{self.base}"

    def start(self) -> FaultFhirServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-fhir-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection (hanging and dripping answers end)."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultFhirServer:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def wait_in_flight(self, at_least: int, timeout: float = 5.0) -> bool:
        """Wait until ``at_least`` requests are being answered (hung or dripping) at once."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.in_flight >= at_least:
                return True
            time.sleep(0.01)
        return False

    def mode_for(self, query: str) -> str:
        return self.modes.get(query_type(query), self.mode)

    # -- answers --------------------------------------------------------------------------------------------------
    def _handler(self):
        fault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with fault._lock:
                    fault._open.add(self.connection)
                    fault.stats["connections"] += 1

            def finish(self):
                with fault._lock:
                    fault._open.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_GET(self):  # noqa: N802 - http.server's name
                path = self.path
                if fault.base and (path == fault.base or path.startswith(fault.base + "/")):
                    path = path[len(fault.base) :]
                query = path.lstrip("/")
                mode = fault.mode_for(query)
                with fault._lock:
                    fault.stats["requests"] += 1
                    fault.stats[mode] += 1
                    fault.paths.append(query)
                    if self.headers.get("Authorization"):
                        fault.authorizations.add(self.headers["Authorization"])
                    fault.in_flight += 1
                    fault.stats["max_in_flight"] = max(fault.stats["max_in_flight"], fault.in_flight)
                try:
                    getattr(self, "_" + mode.replace("-", "_").replace("500", "error"))(query)
                except OSError:  # the client went away (as it should, at its deadline)
                    self.close_connection = True
                finally:
                    with fault._lock:
                        fault.in_flight -= 1

            def _send(self, status: int, body: bytes, content_type: str = "application/fhir+json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _ok(self, query: str) -> None:
                found = fhir_query.search(fault.record, query)
                status = 404 if found.get("resourceType") == "OperationOutcome" and "?" not in query else 200
                self._send(status, json.dumps(found).encode())

            def _gone(self, seconds: float) -> bool:
                """Wait ``seconds``; True as soon as the client hangs up or the server stops."""
                end = time.monotonic() + seconds
                while not fault._stop.is_set():
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    # poll, not select: select() refuses a descriptor above 1023 (a long test run has them)
                    poller = select.poll()
                    poller.register(self.connection, select.POLLIN)
                    readable = poller.poll(min(left, 0.05) * 1000)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return True
                return True

            def _hang(self, _query: str) -> None:
                self.close_connection = True
                while not self._gone(60):
                    pass

            def _error(self, _query: str) -> None:
                self._send(500, json.dumps(_OUTCOME).encode())

            def _invalid_json(self, _query: str) -> None:
                self._send(200, b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"reso')

            def _outcome(self, _query: str) -> None:
                self._send(200, json.dumps(_OUTCOME).encode())

            def _huge(self, _query: str) -> None:
                head, tail = b'{"resourceType": "Bundle", "type": "searchset", "id": "', b'"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(HUGE_BYTES))
                self.end_headers()
                self.wfile.write(head)
                left = HUGE_BYTES - len(head) - len(tail)
                block = b"x" * (1024 * 1024)
                while left > 0 and not fault._stop.is_set():
                    piece = block[:left]
                    self.wfile.write(piece)
                    left -= len(piece)
                self.wfile.write(tail)

            def _drip(self, query: str) -> None:
                body = json.dumps(fhir_query.search(fault.record, query)).encode()
                answer = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                self.close_connection = True
                for i in range(len(answer)):
                    if i and self._gone(fault.drip_interval):
                        return
                    self.connection.sendall(answer[i : i + 1])

            def _reset(self, _query: str) -> None:
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def log_message(self, *_args):
                pass

        return Handler


def serve(paths: list[str], host: str, port: int, mode: str, faults: list[str], drip_interval: float) -> int:
    from cds_service.cli.devtools.fhir_fixture_server import load_records

    record = [r for _, resources in load_records(paths).values() for r in resources] if paths else []
    modes = {}
    for item in faults:
        kind, _, fault_mode = item.partition("=")
        modes[kind.strip()] = fault_mode.strip()
    server = FaultFhirServer(record, mode, modes, host=host, port=port, drip_interval=drip_interval)
    print(
        f"{server.url}  mode {mode}"
        + "".join(f", {k}: {v}" for k, v in modes.items())
        + f"  ({len(record)} resources)",
        flush=True,
    )
    try:
        server._server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
