"""A request body sent with ``Transfer-Encoding: chunked`` over a real socket (no Content-Length)."""
from __future__ import annotations

import http.client

SIGN = "/cds-services/jak-order-sign"


def send_chunked(port: int, body: bytes, path: str = SIGN, chunk: int = 4096) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for i in range(0, len(body), chunk):
            part = body[i:i + chunk]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass                                   # the server may stop reading once it has refused
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data
