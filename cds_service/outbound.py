"""The HTTP session for every outbound call (EHR FHIR servers, EHR JWKS URLs).

requests, left to itself, looks up a ~/.netrc login for the host on every call and, when it finds one,
puts it in the Authorization header: an EHR's server would get the machine's netrc password (instead of,
for the FHIR server, the token the EHR gave us). A session also keeps every cookie a server sets and sends
it back on later calls: a session cookie the EHR's FHIR server gave one clinician's call would go out with
the next clinician's, or another tenant's. It also scans every environment variable for proxy settings on
every call. ``OutboundSession`` sends only the credentials we set, keeps no cookie, and reads the
environment's proxy and CA settings once per server (NO_PROXY still decided per host).
"""
from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase


class _KeepHeaders(AuthBase):
    """Session auth that changes nothing: with it, requests never reads netrc."""

    def __call__(self, request):
        return request


# No domain is allowed a cookie: none is kept from an answer, none is sent with a call, so every outbound
# call carries only the credentials the call itself has.
_NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])


class OutboundSession(requests.Session):
    MAX_SERVERS = 64

    def __init__(self, connections: int = 10):
        super().__init__()
        self.auth = _KeepHeaders()
        self.cookies.set_policy(_NO_COOKIES)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections)   # requests keeps ten by default
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self._environment: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or verify is not None or cert is not None:      # not how this service calls: no caching
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream)                  # NO_PROXY depends on the host
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(self._environment) >= self.MAX_SERVERS:
                self._environment.clear()
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}
