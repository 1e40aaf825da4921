"""The filter on requests-oauthlib's loggers: what it scrubs, and that it never leaks or raises."""

from __future__ import annotations

import logging

from flowker.auth.oauth_logging import OAuthLogFilter, protect_oauth_logging
from flowker.security.redaction import Redactor


def test_records_of_the_library_loggers_are_scrubbed_with_every_registered_redactor(caplog):
    first, second = Redactor(), Redactor()
    first.add_secret("first-secret-value-123")
    second.add_secret("second-secret-value-456")
    protect_oauth_logging(first)
    protect_oauth_logging(second)
    protect_oauth_logging(second)  # idempotent
    logger = logging.getLogger("requests_oauthlib.oauth2_session")
    assert len([f for f in logger.filters if isinstance(f, OAuthLogFilter)]) == 1
    caplog.set_level(logging.DEBUG, logger="requests_oauthlib")
    logger.debug("body %s and %s", "first-secret-value-123", "x=second-secret-value-456")
    assert caplog.records[-1].getMessage() == "body **** and x=****"


def test_a_failing_redactor_withholds_the_line_instead_of_raising_or_leaking(caplog):
    class Broken(Redactor):
        def scrub_text(self, text):
            raise RecursionError("boom")

    broken = Broken()
    protect_oauth_logging(broken)
    caplog.set_level(logging.DEBUG, logger="oauthlib")
    logging.getLogger("oauthlib").debug("token %s", "tok-should-not-appear")
    assert caplog.records[-1].getMessage() == "log line withheld: redaction failed (RecursionError)"
    del broken  # held weakly: the filter forgets it
    import gc

    gc.collect()
    logging.getLogger("oauthlib").debug("plain line")
    assert caplog.records[-1].getMessage() == "plain line"
