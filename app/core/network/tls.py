"""One TLS client context per process, shared by every HTTP client the service and the CLI make.

Building a context loads the whole CA bundle: about 20 ms of CPU each time, and httpx builds one
for every client and transport that is not handed one. A service starts several, and tests start
hundreds of services; a context is safe to share between connections, threads and event loops.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """httpx's own default context: certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR when
    `trust_env` (as an httpx client with that setting would read them)."""
    return httpx.create_ssl_context(trust_env=trust_env)
