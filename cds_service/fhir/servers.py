"""Which FHIR servers the fallback fetch may call (``JAK_CDS_ALLOWED_FHIR_SERVERS``), compared parsed, not as text."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def _parts(url: str):
    """(scheme, host, port or None, path) of an http(s) URL, or None if it is unusable or ambiguous."""
    if (
        not isinstance(url, str)
        or any(c in url for c in "\\ \t\r\n\x00")
        or any(enc in url.lower() for enc in ("%2f", "%2e", "%5c", "%40"))
    ):
        return None
    try:
        parts = urlsplit(url.rstrip("/"))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None  # userinfo: http://allowed-host:80@evil.example/ is evil.example
    if parts.query or parts.fragment:
        return None
    segments = parts.path.split("/")
    if any(seg in (".", "..") for seg in segments):
        return None  # /fhir/../admin would escape the allowed path
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """True if ``server`` is an allowed prefix or below it, on a path or port boundary.

    ``http://127.0.0.1`` allows ``http://127.0.0.1:8080/fhir`` (a bare host
    without port: any port; with a path: the default port) but never ``http://127.0.0.1.evil.example``, nor
    ``http://127.0.0.1:80@evil.example`` (userinfo), nor ``/fhir/../other``.
    Scheme and host are compared parsed, not as text.
    """
    target = _parts(server)
    if target is None:
        return False
    scheme, host, port, path = target
    for prefix in allowed:
        allowed_parts = _parts(prefix)
        if allowed_parts is None:
            continue
        p_scheme, p_host, p_port, p_path = allowed_parts
        if scheme != p_scheme or host != p_host:
            continue
        if p_port is None and p_path:
            p_port = DEFAULT_PORTS[scheme]  # a prefix with a path but no port means the default port
        if p_port is not None and (port or DEFAULT_PORTS[scheme]) != p_port:
            continue
        if path == p_path or path.startswith(p_path + "/"):
            return True
    return False


def redact_server(server: str) -> str:
    """Scheme and host only, for logs (paths may carry tenant or patient ids)."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.hostname}"


def origin(server: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a server URL, lower case, the port filled in: what one server limit counts."""
    parts = urlsplit(server)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(parts.scheme.lower())
