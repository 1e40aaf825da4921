"""Keeping requests-oauthlib's DEBUG logs of token requests and responses clean.

``requests_oauthlib.oauth2_session`` logs, at DEBUG, the token request body (client
secret, password), its headers (Basic credentials) and the raw token response (access
and refresh tokens). A filter on a logger only sees records created on that very
logger, not those propagated from children, so the filter goes on every logger of the
two libraries that exists, and on the module loggers they log through.
"""

from __future__ import annotations

import logging
import threading
import weakref

# The loggers requests-oauthlib and oauthlib write through (module __name__ loggers).
OAUTH_LOGGER_NAMES = (
    "requests_oauthlib",
    "requests_oauthlib.oauth2_session",
    "requests_oauthlib.oauth2_auth",
    "oauthlib",
    "oauthlib.oauth2",
    "oauthlib.oauth2.rfc6749",
    "oauthlib.oauth2.rfc6749.parameters",
    "oauthlib.oauth2.rfc6749.clients.base",
)
OAUTH_LOGGER_PREFIXES = ("requests_oauthlib.", "oauthlib.")


class OAuthLogFilter(logging.Filter):
    """Scrubs each record with every redactor that registered with it.

    One instance per logger; each :class:`~flowker.security.redaction.Redactor` that
    knows OIDC secrets (the process one, or a token cache's own) adds itself. Redactors
    are held weakly so a finished test's redactor does not live on.
    """

    def __init__(self):
        super().__init__()
        self._redactors: "weakref.WeakSet" = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            redactors = list(self._redactors)
        if not redactors:
            return True
        try:
            message = record.getMessage()
            for redactor in redactors:
                message = redactor.scrub_text(message)
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                exc_text = logging.Formatter().formatException(record.exc_info)
            for redactor in redactors:
                exc_text = redactor.scrub_text(exc_text) if exc_text else exc_text
        except Exception as exc:  # noqa: BLE001 - a filter must not raise, nor let the line through
            message = f"log line withheld: redaction failed ({type(exc).__name__})"
            exc_text = None
            record.exc_info = None
        record.msg = message
        record.args = None
        record.exc_text = exc_text
        return True


_install_lock = threading.Lock()


def protect_oauth_logging(redactor) -> None:
    """Make ``redactor`` scrub every requests-oauthlib / oauthlib log record. Idempotent."""
    with _install_lock:
        names = set(OAUTH_LOGGER_NAMES)
        names.update(
            name
            for name in list(logging.root.manager.loggerDict)
            if isinstance(name, str) and name.startswith(OAUTH_LOGGER_PREFIXES)
        )
        for name in sorted(names):
            logger = logging.getLogger(name)
            oauth_filter = next((f for f in logger.filters if isinstance(f, OAuthLogFilter)), None)
            if oauth_filter is None:
                oauth_filter = OAuthLogFilter()
                logger.addFilter(oauth_filter)
            oauth_filter.add(redactor)
