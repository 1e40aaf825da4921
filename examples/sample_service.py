"""Stand-ins for the services the example executors call, on one local port.

Run it, then run an example against it::

    python examples/sample_service.py            # http://127.0.0.1:8700 (--port, SAMPLE_SERVICE_PORT)
    export FRAUD_API_TOKEN=dev-token LEDGER_API_KEY=dev-ledger-key
    flowker run examples/payment-approval/workflows/payment-approval.yaml \\
        --input '{"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "alice"}'

Credentials are checked loosely: a bearer token, an API key or a Basic password must be
present (any non-empty value), and the KYC API takes only tokens that this service's own
OIDC token endpoint issued. Answers are realistic JSON and deterministic, so examples can
take every branch:

* fraud score: ``amount >= 10000`` or a payer containing "fraud" scores 85 and above;
* KYC: a document number starting with ``X`` is REJECTED; country ``ZZ`` is HIGH risk;
* payments: card token ``tok_declined`` is refused with HTTP 402;
* a repeated ``Idempotency-Key`` returns the first answer again.

Standard library only (wsgiref), so it runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import os
import re
import secrets
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

DEFAULT_PORT = 8700
MAX_BODY = 1024 * 1024
TOKEN_LIFETIME = 3600

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
}


class Request:
    def __init__(self, environ: dict):
        self.method = environ["REQUEST_METHOD"]
        self.path = environ.get("PATH_INFO", "/")
        self.query = dict(
            part.split("=", 1) if "=" in part else (part, "")
            for part in environ.get("QUERY_STRING", "").split("&")
            if part
        )
        self.headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            self.headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.raw = environ["wsgi.input"].read(min(length, MAX_BODY)) if length else b""
        self.host_url = (
            f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST') or environ['SERVER_NAME']}"
        )

    def json(self) -> dict:
        try:
            value = json.loads(self.raw or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def form(self) -> dict:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.raw.decode("utf-8", "replace")))

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:].strip() or None if value.lower().startswith("bearer ") else None

    def basic(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if user and password else None


class Unauthorized(Exception):
    pass


def _id(prefix: str, *parts) -> str:
    """A stable id: the same inputs give the same id, so repeated runs read the same."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}_{digest[:12]}"


class SampleService:
    """Routes and the little state (issued tokens, idempotent answers) they share."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._idempotent: dict[tuple[str, str], tuple[int, dict]] = {}
        self.routes: list[tuple[str, re.Pattern, Callable]] = [
            ("GET", re.compile(r"^/health$"), lambda r: (200, {"status": "ok"})),
            ("GET", re.compile(r"^/\.well-known/openid-configuration$"), self.discovery),
            ("POST", re.compile(r"^/oauth/token$"), self.token),
            ("POST", re.compile(r"^/fraud/v1/transactions/analyze$"), self.fraud_analyze),
            ("GET", re.compile(r"^/fraud/v1/cases/(?P<case_id>[^/]+)$"), self.fraud_case),
            ("POST", re.compile(r"^/ledger/v1/payments$"), self.ledger_book),
            ("POST", re.compile(r"^/ledger/v1/reviews$"), self.ledger_review),
            ("POST", re.compile(r"^/ledger/v1/settlements$"), self.ledger_settle),
            ("POST", re.compile(r"^/banking/v1/customers$"), self.bank_customer),
            ("POST", re.compile(r"^/banking/v1/customers/(?P<customer_id>[^/]+)/accounts$"), self.bank_account),
            ("POST", re.compile(r"^/kyc/v1/verifications$"), self.kyc_verify),
            ("GET", re.compile(r"^/kyc/v1/verifications/(?P<verification_id>[^/]+)$"), self.kyc_get),
            ("POST", re.compile(r"^/payments/v1/authorisations$"), self.payment_authorise),
            ("POST", re.compile(r"^/warehouse/v1/reservations$"), self.warehouse_reserve),
            ("DELETE", re.compile(r"^/warehouse/v1/reservations/(?P<reservation_id>[^/]+)$"), self.warehouse_release),
            ("POST", re.compile(r"^/carrier/v1/shipments$"), self.carrier_ship),
        ]

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        status, body = self.dispatch(request)
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Content-Type", "application/json")] if body is not None else []
        headers.append(("Content-Length", str(len(payload))))
        start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
        return [payload]

    def dispatch(self, request: Request) -> tuple[int, dict | None]:
        allowed = []
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            try:
                return self._idempotently(request, lambda: handler(request, **match.groupdict()))  # noqa: B023 - called at once
            except Unauthorized as exc:
                return 401, {"error": "unauthorized", "message": str(exc)}
        if allowed:
            return 405, {"error": "method_not_allowed", "allowed": allowed}
        return 404, {"error": "not_found", "path": request.path}

    def _idempotently(self, request: Request, answer: Callable) -> tuple[int, dict | None]:
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or not key:
            return answer()
        with self._lock:
            seen = self._idempotent.get((request.path, key))
        if seen is not None:
            return seen
        result = answer()
        with self._lock:
            if result[0] < 500:
                self._idempotent.setdefault((request.path, key), result)
        return result

    # -- credentials (checked loosely) --------------------------------------------------

    @staticmethod
    def _require_bearer(request: Request) -> str:
        token = request.bearer()
        if not token:
            raise Unauthorized("a bearer token is required")
        return token

    @staticmethod
    def _require_header(request: Request, name: str) -> None:
        if not request.headers.get(name.lower()):
            raise Unauthorized(f"header {name} is required")

    def _require_issued_token(self, request: Request) -> None:
        token = self._require_bearer(request)
        with self._lock:
            if token not in self._tokens:
                raise Unauthorized("the token was not issued by this service's token endpoint")

    # -- OIDC -----------------------------------------------------------------------------

    def discovery(self, request: Request):
        issuer = request.host_url
        return 200, {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "grant_types_supported": ["client_credentials", "password", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def token(self, request: Request):
        form = request.form()
        credentials = request.basic() or (form.get("client_id"), form.get("client_secret"))
        if not credentials or not credentials[0] or not credentials[1]:
            return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password", "refresh_token"):
            return 400, {"error": "unsupported_grant_type"}
        if grant == "password" and not (form.get("username") and form.get("password")):
            return 400, {"error": "invalid_grant", "error_description": "username and password are required"}
        access_token = "sample_" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(access_token)
        answer = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": form.get("scope", ""),
        }
        if grant != "client_credentials":
            answer["refresh_token"] = "sample_refresh_" + secrets.token_urlsafe(16)
        return 200, answer

    # -- fraud ----------------------------------------------------------------------------

    def fraud_analyze(self, request: Request):
        self._require_bearer(request)
        body = request.json()
        if "transactionId" not in body or not isinstance(body.get("amount"), (int, float)):
            return 422, {"error": "validation_failed", "message": "transactionId and a numeric amount are required"}
        amount = float(body["amount"])
        suspicious = amount >= 10000 or "fraud" in str(body.get("payer", "")).lower()
        score = 85 + int(amount) % 15 if suspicious else 5 + int(amount) % 55
        reasons = ["HIGH_AMOUNT"] if amount >= 10000 else []
        if "fraud" in str(body.get("payer", "")).lower():
            reasons.append("PAYER_ON_WATCHLIST")
        return 200, {
            "transactionId": body["transactionId"],
            "score": score,
            "riskLevel": "HIGH" if score >= 80 else "MEDIUM" if score >= 40 else "LOW",
            "reasons": reasons,
            "caseId": _id("case", body["transactionId"]) if suspicious else None,
            "model": "fraud-v3.2",
        }

    def fraud_case(self, request: Request, case_id: str):
        self._require_bearer(request)
        return 200, {"caseId": case_id, "status": "OPEN", "assignee": None}

    # -- ledger ---------------------------------------------------------------------------

    def ledger_book(self, request: Request):
        self._require_header(request, "X-Ledger-Key")
        body = request.json()
        return 201, {
            "bookingId": _id("bk", body.get("transactionId"), request.headers.get("idempotency-key")),
            "transactionId": body.get("transactionId"),
            "status": "BOOKED",
            "amount": body.get("amount"),
            "currency": body.get("currency"),
        }

    def ledger_review(self, request: Request):
        self._require_header(request, "X-Ledger-Key")
        body = request.json()
        return 201, {
            "reviewId": _id("rv", body.get("transactionId")),
            "status": "OPEN",
            "queue": "fraud-review",
            "reason": body.get("reason"),
        }

    def ledger_settle(self, request: Request):
        # The sandbox region never has payments: the "nothing to settle" branch.
        self._require_header(request, "X-Ledger-Key")
        body = request.json()
        payments = 0 if body.get("region") == "SANDBOX" else 42
        return 201, {
            "settlementId": _id("st", body.get("region"), body.get("cutoff")),
            "region": body.get("region"),
            "cutoff": body.get("cutoff"),
            "payments": payments,
            "status": "SETTLED" if payments else "EMPTY",
        }

    # -- core banking ---------------------------------------------------------------------

    def _require_basic(self, request: Request) -> None:
        if request.basic() is None:
            raise Unauthorized("HTTP Basic credentials are required")

    def bank_customer(self, request: Request):
        self._require_basic(request)
        body = request.json()
        if not body.get("fullName"):
            return 422, {"error": "validation_failed", "message": "fullName is required"}
        return 201, {
            "customerId": _id("cus", body.get("fullName"), body.get("email")),
            "fullName": body["fullName"],
            "email": body.get("email"),
            "status": "ACTIVE",
        }

    def bank_account(self, request: Request, customer_id: str):
        self._require_basic(request)
        body = request.json()
        account_id = _id("acc", customer_id, body.get("product"))
        digits = str(int(hashlib.sha256(account_id.encode()).hexdigest()[:12], 16))[:10].rjust(10, "0")
        return 201, {
            "accountId": account_id,
            "customerId": customer_id,
            "product": body.get("product", "CURRENT"),
            "currency": body.get("currency", "EUR"),
            "iban": f"DE89370400{digits}",
            "status": "OPEN",
        }

    # -- KYC ------------------------------------------------------------------------------

    def kyc_verify(self, request: Request):
        self._require_issued_token(request)
        body = request.json()
        document = body.get("document") if isinstance(body.get("document"), dict) else {}
        number = str(document.get("number", ""))
        if not number:
            return 422, {"error": "validation_failed", "message": "document.number is required"}
        status = "REJECTED" if number.upper().startswith("X") else "VERIFIED"
        risk = "HIGH" if str(body.get("country", "")).upper() == "ZZ" else "LOW"
        return 201, {
            "verificationId": _id("kyc", body.get("reference"), number),
            "status": status,
            "riskLevel": risk,
            "checks": ["DOCUMENT", "SANCTIONS", "PEP"],
            "reference": body.get("reference"),
        }

    def kyc_get(self, request: Request, verification_id: str):
        self._require_issued_token(request)
        return 200, {"verificationId": verification_id, "status": "VERIFIED", "riskLevel": "LOW"}

    # -- orders ---------------------------------------------------------------------------

    def payment_authorise(self, request: Request):
        self._require_bearer(request)
        body = request.json()
        if body.get("cardToken") == "tok_declined":
            return 402, {"error": "card_declined", "message": "the card was declined"}
        return 201, {
            "authorisationId": _id("auth", body.get("orderId")),
            "status": "AUTHORISED",
            "amount": body.get("amount"),
            "currency": body.get("currency"),
        }

    def warehouse_reserve(self, request: Request):
        self._require_header(request, "X-API-Key")
        body = request.json()
        items = body.get("items") if isinstance(body.get("items"), list) else []
        if not items:
            return 422, {"error": "validation_failed", "message": "items must not be empty"}
        return 201, {
            "reservationId": _id("res", body.get("orderId")),
            "status": "RESERVED",
            "items": items,
            "warehouse": "FRA-1",
        }

    def warehouse_release(self, request: Request, reservation_id: str):
        self._require_header(request, "X-API-Key")
        return 204, None

    def carrier_ship(self, request: Request):
        if not request.query.get("apikey"):
            raise Unauthorized("query parameter apikey is required")
        body = request.json()
        service = body.get("service", "STANDARD")
        return 201, {
            "shipmentId": _id("shp", body.get("orderId"), service),
            "service": service,
            "trackingNumber": f"{'EX' if service == 'EXPRESS' else 'ST'}{_id('', body.get('orderId'))[1:11].upper()}",
            "parcels": body.get("parcels", 1),
            "etaDays": 1 if service == "EXPRESS" else 3,
        }


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        if os.environ.get("SAMPLE_SERVICE_LOG"):
            super().log_message(format, *args)


def make_sample_server(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> WSGIServer:
    """A server (not yet serving) for the sample service; ``port=0`` picks a free port."""
    return make_server(host, port, SampleService(), server_class=_ThreadingServer, handler_class=_QuietHandler)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Local stand-ins for the example executors' services.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SAMPLE_SERVICE_PORT", DEFAULT_PORT)),
        help="port to listen on (0 picks a free one); default 8700 or $SAMPLE_SERVICE_PORT",
    )
    args = parser.parse_args(argv)
    try:
        server = make_sample_server(args.host, args.port)
    except OSError as exc:
        # One line naming the port and the setting, not a traceback.
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(
            f"sample service: cannot listen on {args.host}:{args.port}: port {reason}; "
            "choose another with --port or SAMPLE_SERVICE_PORT (the example executors call 8700)",
            file=sys.stderr,
        )
        return 2
    print(f"sample service listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
