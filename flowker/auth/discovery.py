"""OpenID Connect discovery: ``<issuer>/.well-known/openid-configuration``.

The document is fetched through the session the caller gives (the SSRF-guarded one),
checked (JSON object, the issuer it names is the one configured, a token endpoint), and
any failure becomes an :class:`flowker.errors.AuthTypeError` that says what went wrong
without echoing the response body.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import requests

from flowker.errors import AuthTypeError
from flowker.security.redaction import redact_url

WELL_KNOWN_PATH = "/.well-known/openid-configuration"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 512 * 1024
INSECURE_TRANSPORT_VARIABLE = "OAUTHLIB_INSECURE_TRANSPORT"


def normalize_issuer(issuer_url: str) -> str:
    return issuer_url.rstrip("/")


def discovery_url(issuer_url: str) -> str:
    return normalize_issuer(issuer_url) + WELL_KNOWN_PATH


def require_secure_transport(url: str, what: str, production: bool) -> None:
    """Refuse plain-HTTP identity endpoints.

    HTTPS is always required in production. Elsewhere plain HTTP is accepted only when
    ``OAUTHLIB_INSECURE_TRANSPORT`` is set (oauthlib's own switch, needed for it anyway),
    which is meant for a provider on the developer's machine.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return
    shown = redact_url(url)
    if scheme != "http":
        raise AuthTypeError(f"{what} {shown} must be an https:// URL")
    if production:
        raise AuthTypeError(f"{what} {shown} must use https:// in production")
    if not os.environ.get(INSECURE_TRANSPORT_VARIABLE):
        raise AuthTypeError(
            f"{what} {shown} uses plain http://; use https://, or for a provider on your own "
            f"machine set {INSECURE_TRANSPORT_VARIABLE}=1 (never in production)"
        )


def fetch_discovery(
    session: requests.Session,
    issuer_url: str,
    production: bool = False,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    required_endpoint: str = "token_endpoint",
) -> dict:
    """The provider's metadata, validated; raises AuthTypeError with a clear reason.
    ``required_endpoint`` names the URL the caller needs (a client: the token endpoint;
    a resource server checking people's tokens: ``jwks_uri``)."""
    issuer = normalize_issuer(issuer_url)
    url = discovery_url(issuer)
    require_secure_transport(url, "OIDC issuer", production)
    where = f"OIDC discovery for issuer {redact_url(issuer)}"
    try:
        response = session.get(url, timeout=timeout, allow_redirects=False, headers={"Accept": "application/json"})
    except requests.exceptions.Timeout:
        raise AuthTypeError(f"{where} failed: {url} did not answer within {timeout:g} s") from None
    except requests.exceptions.SSLError:
        raise AuthTypeError(f"{where} failed: the TLS certificate of {redact_url(url)} was not accepted") from None
    except requests.exceptions.RequestException as exc:
        raise AuthTypeError(f"{where} failed: could not reach {redact_url(url)} ({type(exc).__name__})") from None
    with response:
        if response.status_code != 200:
            raise AuthTypeError(
                f"{where} failed: {redact_url(url)} answered HTTP {response.status_code}; "
                "check issuer_url (discovery is at <issuer_url>/.well-known/openid-configuration)"
            )
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise AuthTypeError(f"{where} failed: the discovery document is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = response.json()
        except ValueError:
            content_type = response.headers.get("Content-Type", "no content type")
            raise AuthTypeError(
                f"{where} failed: {redact_url(url)} did not answer JSON ({content_type}); check issuer_url"
            ) from None
    if not isinstance(document, dict):
        raise AuthTypeError(f"{where} failed: the discovery document is not a JSON object")
    named = document.get("issuer")
    if not isinstance(named, str) or normalize_issuer(named) != issuer:
        raise AuthTypeError(
            f"{where} failed: the document names issuer {redact_url(str(named))!s}, not the configured "
            f"{redact_url(issuer)} (OpenID Connect Discovery requires them to match)"
        )
    endpoint = document.get(required_endpoint)
    if not isinstance(endpoint, str) or not endpoint:
        raise AuthTypeError(f"{where} failed: the discovery document has no {required_endpoint}")
    require_secure_transport(endpoint, f"OIDC {required_endpoint.replace('_', ' ')}", production)
    return document
