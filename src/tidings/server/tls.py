"""TLS terminated by the server itself (settings ``tls_cert`` and ``tls_key``).

uvicorn builds one :class:`ssl.SSLContext` from the two files at start and hands it to the
listening socket. On SIGHUP :func:`reload` loads the files again *into that same object*
(``load_cert_chain``): handshakes from then on present the new certificate, connections already
open keep theirs, and the listener is never closed. A renewed certificate (certbot, acme.sh)
is picked up with ``systemctl reload tidings``. New files that do not load, or whose key does
not match the certificate, are refused and the old pair stays in force.
"""

from __future__ import annotations

import logging
import signal
import ssl
from types import FrameType

log = logging.getLogger(__name__)


def check_pair(cert: str, key: str) -> None:
    """Raise (``ssl.SSLError`` or ``OSError``) unless ``cert`` and ``key`` load as a pair."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    scratch.load_cert_chain(cert, key)


def reload(context: ssl.SSLContext, cert: str, key: str) -> bool:
    """Load ``cert``/``key`` into the live ``context``; False (and the old pair kept) when
    they do not load."""
    try:
        check_pair(cert, key)  # first on a scratch context: a bad pair must not half-replace
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        log.error("TLS reload failed, keeping the current certificate: %s", exc)
        return False
    log.info("TLS certificate reloaded from %s", cert)
    return True


def reload_on_sighup(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Install a SIGHUP handler that reloads the certificate into ``context``."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        reload(context, cert, key)

    signal.signal(signal.SIGHUP, handler)
