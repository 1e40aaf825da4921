"""The Redactor's cache of scrub results: never serves a result older than the secrets."""

from __future__ import annotations

import secrets
import threading

from flowker.security.redaction import MASK, SCRUB_CACHE_MAX_TEXT, Redactor


def fresh_secret(prefix: str = "late") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def test_secret_registered_after_a_cached_scrub_is_masked_next_time():
    redactor = Redactor()
    secret = fresh_secret()
    text = f"the answer carried {secret} in it"
    assert redactor.scrub_text(text) == text  # unknown yet: cached as it is
    assert redactor.scrub_text(text) == text  # served from the cache
    redactor.add_secret(secret)
    assert redactor.scrub_text(text) == f"the answer carried {MASK} in it"
    # Also through redact(), keys included, as the recorder and the audit chain use it.
    assert redactor.redact({text: text}) == {f"the answer carried {MASK} in it": f"the answer carried {MASK} in it"}


def test_secret_header_added_after_a_cached_scrub_is_masked_next_time():
    redactor = Redactor()
    before = redactor.scrub_text("X-Tenant: abcdef123456")
    assert before == "X-Tenant: abcdef123456"
    redactor.add_secret_header("X-Tenant")
    assert redactor.scrub_text("X-Tenant: abcdef123456") == f"X-Tenant: {MASK}"
    assert redactor.redact({"X-Tenant": "abcdef123456"}) == {"X-Tenant": MASK}


def test_cached_results_equal_uncached_ones():
    cached, uncached = Redactor(), Redactor(cache_size=0)
    secret = fresh_secret("s")
    for redactor in (cached, uncached):
        redactor.add_secret(secret)
    texts = [
        f"Bearer {secret}",
        "plain words",
        "password=hunter22",
        f"https://u:p@h/x?token={secret}",
        '{"apiKey": "k-123456"}',
        "status code: 200",
    ]
    for _ in range(2):  # the second round is answered from the cache
        assert [cached.scrub_text(t) for t in texts] == [uncached.scrub_text(t) for t in texts]


def test_cache_is_bounded_and_skips_long_texts():
    redactor = Redactor(cache_size=8)
    for number in range(50):
        redactor.scrub_text(f"text number {number}")
    assert len(redactor._scrub_cache[1]) == 8
    redactor.scrub_text("x" * (SCRUB_CACHE_MAX_TEXT + 1))
    assert "x" * (SCRUB_CACHE_MAX_TEXT + 1) not in redactor._scrub_cache[1]


def test_secret_registered_while_other_threads_scrub_is_masked_once_registered():
    redactor = Redactor()
    secret = fresh_secret("race")
    text = f"value {secret} end"
    stop = threading.Event()

    def scrub_forever():
        for _ in range(200_000):  # bounded
            if stop.is_set():
                return
            redactor.scrub_text(text)

    workers = [threading.Thread(target=scrub_forever) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for round_number in range(20):
            other = fresh_secret(f"r{round_number}")
            sample = f"value {other} end"
            redactor.scrub_text(sample)
            redactor.add_secret(other)
            assert redactor.scrub_text(sample) == f"value {MASK} end"
        redactor.add_secret(secret)
        assert redactor.scrub_text(text) == f"value {MASK} end"
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert redactor.scrub_text(text) == f"value {MASK} end"


def test_redact_url_remembered_per_url_still_masks_a_later_secret():
    redactor = Redactor()
    secret = fresh_secret("path")
    url = f"https://user:pw@api.example.test/v1/{secret}/items?access_token=abc&page=2"
    first = redactor.redact_url(url)
    assert first == f"https://user:{MASK}@api.example.test/v1/{secret}/items?access_token={MASK}&page=2"
    assert redactor.redact_url(url) == first  # the URL part from the memo
    redactor.add_secret(secret)
    assert (
        redactor.redact_url(url) == f"https://user:{MASK}@api.example.test/v1/{MASK}/items?access_token={MASK}&page=2"
    )
