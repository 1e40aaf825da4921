"""Signed webhook calls (DESIGN §13): the one way to call a webhook route without
``X-API-Key``, for triggers that declare ``auth: {type: signature, scheme, secret}``.

:meth:`SignedWebhooks.authenticate` resolves the trigger's secret (a ``$env``/``$file``
reference under the secret-reference policy, or a literal stored encrypted), checks the
signature over the raw body (:mod:`flowker.security.webhook_signatures`) and answers the
principal: kind ``webhook_signature``, role ``webhook``, limited to that workflow.
:meth:`SignedWebhooks.accept_once` records the message in the replay ledger
(:mod:`flowker.storage.webhook_deliveries`) right before the run starts, so the same
message is refused with 409 ``FLK-0366`` by this and every other server on the database.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from dataclasses import dataclass

import falcon

from flowker.access import Principal, PrincipalKind, Role
from flowker.error_codes import ErrorCode
from flowker.errors import Conflict, SecretUnavailableError, Unauthorized
from flowker.security.webhook_signatures import (
    DEFAULT_HMAC_HEADER,
    TIMESTAMP_TOLERANCE_SECONDS,
    SignatureCheck,
    SignatureRefused,
    VerifiedDelivery,
    verify_delivery,
)

# How long a message id is remembered. Timestamped messages only until their timestamp
# is out of tolerance anyway (plus a minute for clocks); the others, which the timestamp
# check cannot stop, for 30 days.
UNTIMESTAMPED_RETENTION = _dt.timedelta(days=30)
PRUNE_EVERY_SECONDS = 60.0


def signature_auth(trigger: dict) -> dict | None:
    """The trigger's ``auth`` declaration when it is a signature one."""
    auth = trigger.get("auth")
    return auth if isinstance(auth, dict) and auth.get("type") == "signature" else None


@dataclass(frozen=True)
class SignedCall:
    """A call whose signature matched: who it counts as, and the message to record."""

    principal: Principal
    workflow_id: str
    scheme: str
    delivery: VerifiedDelivery


class SignedWebhooks:
    def __init__(self, state, clock=time.time):
        self.state = state
        self._clock = clock
        self._prune_lock = threading.Lock()
        self._pruned_at = 0.0

    def authenticate(self, req: falcon.Request, workflow, auth: dict, body: bytes) -> SignedCall:
        """The signed call's principal, or 401 FLK-0364 / FLK-0365 saying what is wrong."""
        from flowker.security.secrets import SecretResolver

        resolver = SecretResolver.from_settings(
            self.state.settings, box=self.state.secret_box, register=self.state.redactor.add_secret
        )
        secret = str(resolver.resolve(auth.get("secret")))
        scheme = str(auth.get("scheme"))
        check = SignatureCheck(scheme, secret, str(auth.get("header") or DEFAULT_HMAC_HEADER))
        headers = {name.lower(): value for name, value in req.headers.items()}
        try:
            delivery = verify_delivery(check, headers, body, self._clock())
        except SignatureRefused as refused:
            if refused.reason == "secret":
                raise SecretUnavailableError(f"workflow {workflow.name}: {refused.message}") from None
            code = (
                ErrorCode.WEBHOOK_TIMESTAMP_REFUSED
                if refused.reason == "timestamp"
                else ErrorCode.WEBHOOK_SIGNATURE_INVALID
            )
            raise Unauthorized(f"signed webhook refused ({scheme}): {refused.message}", code=code) from None
        principal = Principal(
            PrincipalKind.WEBHOOK_SIGNATURE, workflow.name, Role.WEBHOOK, workflows=frozenset({workflow.name})
        )
        return SignedCall(principal, workflow.id, scheme, delivery)

    def accept_once(self, call: SignedCall) -> None:
        """Record the message; 409 FLK-0366 when any server recorded it before."""
        from flowker.storage.webhook_deliveries import delivery_key, remember_delivery

        now_seconds = self._clock()
        now = _utc(now_seconds)
        if call.delivery.timestamp is not None:
            latest = max(now_seconds, float(call.delivery.timestamp)) + TIMESTAMP_TOLERANCE_SECONDS + 60
            keep_until = _utc(latest)
        else:
            keep_until = now + UNTIMESTAMPED_RETENTION
        key = delivery_key(call.workflow_id, call.scheme, call.delivery.message_id)
        if not remember_delivery(key, call.workflow_id, now, keep_until):
            raise Conflict(
                "this signed message was already accepted (same message id): a replay is refused, "
                "on this server and on every other sharing the database",
                code=ErrorCode.WEBHOOK_REPLAYED,
            )
        self._prune(now_seconds, now)

    def forget(self, call: SignedCall) -> None:
        """Undo :meth:`accept_once` for a call that then did not start a run."""
        from flowker.storage.webhook_deliveries import delivery_key, forget_delivery

        forget_delivery(delivery_key(call.workflow_id, call.scheme, call.delivery.message_id))

    def _prune(self, now_seconds: float, now: _dt.datetime) -> None:
        """Forget messages past their keep-until time, at most once a minute per process."""
        from flowker.storage.webhook_deliveries import prune_expired

        if now_seconds - self._pruned_at < PRUNE_EVERY_SECONDS or not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._pruned_at = now_seconds
            prune_expired(now)
        finally:
            self._prune_lock.release()


def _utc(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(tzinfo=None)
