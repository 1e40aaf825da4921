"""``ANY /v1/webhooks/{path}``: run the active workflow whose webhook trigger owns that
method and path.

Routes come from the WebhookRoute table (written at activation), so every process and
host serves every webhook. A call needs ``X-API-Key`` (or a bearer token), except on a
trigger that declares ``auth: {type: signature, ...}``: there a valid signature over the
raw body stands in for it (:mod:`flowker.api.webhook_signing`), and a replayed message is
refused. A trigger with ``verify_token`` also needs ``X-Webhook-Token`` (compared in
constant time). The JSON body (empty = ``{}``) is the input, plus
``_webhook: {method, path, headers, query, remote_ip}`` without credential headers.
The response is the execution's, with ``X-Webhook-Workflow-ID`` and
``X-Webhook-Execution-ID``. A trigger declared ``mode: async`` (or a call with ``Prefer:
respond-async``) queues the run and answers 202 with status ``queued`` at once.
"""

from __future__ import annotations

import hmac

import falcon

from flowker.api.authentication import require_principal, set_principal
from flowker.api.bodies import parse_json, read_body
from flowker.api.errors import bad_body
from flowker.api.executions import idempotency_key, start_execution, summary
from flowker.errors import NotFound, Unauthorized, UnprocessableEntity
from flowker.runner.service import request_hash
from flowker.storage.models import Execution, WebhookRoute, Workflow
from flowker.catalog.workflows import normalise_webhook_path
from flowker.error_codes import ErrorCode
from flowker.validation.input_reads import WEBHOOK_INPUT

MAX_PATH = 500
# Never copied into the run's input: they are credentials.
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-webhook-token",
        "cookie",
    }
)


def _trigger_data(spec: dict, method: str, path: str) -> dict:
    for node in spec.get("nodes") or []:
        data = node.get("data") if isinstance(node, dict) else None
        if (
            isinstance(data, dict)
            and node.get("type") == "trigger"
            and data.get("triggerType") == "webhook"
            and str(data.get("method", "")).upper() == method
            and normalise_webhook_path(str(data.get("path", ""))) == path
        ):
            return data
    return {}


class Webhook:
    def __init__(self, state):
        from flowker.api.webhook_signing import SignedWebhooks

        self.state = state
        self.signed = SignedWebhooks(state)

    def _handle(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        from flowker.api.webhook_signing import signature_auth

        # None: the call carried no X-API-Key (or bearer token); only a trigger that
        # declares signature auth accepts it, when the signature matches (else 401).
        principal = req.context.principal
        method = req.method.upper()
        route_path = normalise_webhook_path(path)
        if len(route_path) > MAX_PATH:
            require_principal(req)  # which routes exist is told to authenticated callers only
            raise NotFound(
                f"no webhook is registered for {method} (path too long)", code=ErrorCode.WEBHOOK_ROUTE_NOT_FOUND
            )
        route = WebhookRoute.get_or_none((WebhookRoute.method == method) & (WebhookRoute.path == route_path))
        if route is None:
            require_principal(req)
            raise NotFound(
                f"no active workflow has a webhook for {method} {route_path}", code=ErrorCode.WEBHOOK_ROUTE_NOT_FOUND
            )
        workflow = Workflow.get_or_none(Workflow.id == route.workflow_id)
        if workflow is None:
            require_principal(req)
            raise NotFound(f"workflow {route.workflow_id} not found", code=ErrorCode.WORKFLOW_NOT_FOUND)
        trigger = _trigger_data(workflow.spec, method, route_path)
        if principal is not None and not principal.sees_workflow(workflow.name):
            # Outside the caller's scope: answered as if no webhook were there.
            raise NotFound(
                f"no active workflow has a webhook for {method} {route_path}", code=ErrorCode.WEBHOOK_ROUTE_NOT_FOUND
            )
        auth = signature_auth(trigger) if principal is None else None
        if principal is None and auth is None:
            require_principal(req)  # 401 before the body is read
        raw_body = read_body(req)
        signed_call = None
        if auth is not None:
            # The signature is over the raw bytes: checked before the body is parsed.
            signed_call = self.signed.authenticate(req, workflow, auth, raw_body)
            set_principal(req, signed_call.principal)  # the audit names the signed webhook
        if workflow.status != "active":
            raise UnprocessableEntity(f"workflow {workflow.name} is not active", code=ErrorCode.WORKFLOW_NOT_ACTIVE)
        self._verify_token(req, trigger)

        key = idempotency_key(req)
        body = parse_json(raw_body, empty={}, what="webhook body")
        if not isinstance(body, dict):
            raise bad_body("the webhook body must be empty or a JSON object")
        if signed_call is not None:
            self.signed.accept_once(signed_call)  # 409 for a message any server accepted before
        headers = {"X-Webhook-Workflow-ID": workflow.id}
        if key is not None and self._replayed(req, resp, workflow.id, key, body, headers):
            return
        input_data = dict(body)
        input_data[WEBHOOK_INPUT] = {
            "method": method,
            "path": route_path.lstrip("/"),
            "headers": {
                name.lower(): value for name, value in req.headers.items() if name.lower() not in DROPPED_HEADERS
            },
            "query": dict(req.params),
            "remote_ip": req.context.client_ip,
        }
        # A sender's retry is the same delivery even if its headers or address differ.
        try:
            execution = start_execution(
                self.state,
                req,
                resp,
                workflow.id,
                input_data,
                key=key,
                headers=headers,
                digest=request_hash(body),
                checked_input=body,  # the inputSchema describes the body; _webhook is Flowker's
                queued=trigger.get("mode") == "async",  # answered 202 at once, run by a queue worker
            )
        except Exception:
            if signed_call is not None:
                # Not run (draining, input refused...): a sender's retry must not look like a replay.
                self.signed.forget(signed_call)
            raise
        resp.set_header("X-Webhook-Execution-ID", execution.id)

    def _replayed(self, req, resp, workflow_id: str, key: str, body: dict, headers: dict) -> bool:
        """A repeated key: the first execution (200), if the body is the same; 422 if not.

        Compared on the body alone: the ``_webhook`` part (headers, address) may differ
        between a sender's retries.
        """
        existing = Execution.get_or_none((Execution.workflow_id == workflow_id) & (Execution.idempotency_key == key))
        if existing is None:
            return False
        previous = {k: v for k, v in (existing.input_data or {}).items() if k != WEBHOOK_INPUT}
        if previous != body:
            raise UnprocessableEntity(
                "this Idempotency-Key was already used with a different request body",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            )
        resp.status = falcon.HTTP_200
        resp.location = f"/v1/executions/{existing.id}"
        for name, value in headers.items():
            resp.set_header(name, value)
        resp.set_header("X-Webhook-Execution-ID", existing.id)
        resp.media = summary(existing)
        return True

    def _verify_token(self, req: falcon.Request, trigger: dict) -> None:
        expected_config = trigger.get("verify_token")
        if expected_config is None:
            return
        from flowker.security.secrets import SecretResolver

        resolver = SecretResolver.from_settings(
            self.state.settings, box=self.state.secret_box, register=self.state.redactor.add_secret
        )
        expected = resolver.resolve(expected_config)
        presented = req.get_header("X-Webhook-Token") or ""
        if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), str(expected).encode("utf-8")):
            raise Unauthorized(
                "webhook token missing or invalid (X-Webhook-Token)", code=ErrorCode.WEBHOOK_TOKEN_INVALID
            )

    def on_get(self, req, resp, path: str) -> None:
        self._handle(req, resp, path)

    def on_post(self, req, resp, path: str) -> None:
        self._handle(req, resp, path)

    def on_put(self, req, resp, path: str) -> None:
        self._handle(req, resp, path)

    def on_patch(self, req, resp, path: str) -> None:
        self._handle(req, resp, path)

    def on_delete(self, req, resp, path: str) -> None:
        self._handle(req, resp, path)
