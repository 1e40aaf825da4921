"""``create_app(settings)``: the Falcon WSGI application.

Everything the resources need comes from one :class:`flowker.runtime.Runtime` (the
composition root: plugin registry, execution service, stores, secret box, SSRF policy,
audit log) plus what only the API has, the queue worker (if this app runs one) and the
draining flag; all reachable as ``app.state`` (:class:`AppState`). Nothing connects to the database here;
each request opens its connection and binds the models to the runtime's database
(:class:`flowker.api.middleware.DatabaseMiddleware`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import falcon

from flowker.api import errors as api_errors
from flowker.api.access import AccessMiddleware
from flowker.api.authentication import AuthenticationMiddleware, AuthorizationMiddleware, BearerAuthenticator
from flowker.api.middleware import (
    BodyLimitMiddleware,
    ClientMiddleware,
    CorsMiddleware,
    DatabaseMiddleware,
    HttpsMiddleware,
    QueryParamsMiddleware,
)
from flowker.console import console_routes, public_console_routes
from flowker.errors import ConfigurationError
from flowker.security.redaction import install_log_redaction

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from flowker.catalog.api_keys import ApiKeyStore
    from flowker.queue.depth import QueueDepthSampler
    from flowker.queue.worker import QueueWorker
    from flowker.runner.service import ExecutionService
    from flowker.runtime import Runtime

# Seconds the queue worker's runs get to end when the app closes (a gunicorn worker
# exiting); runs still going then are taken over by other workers once their lease expires.
QUEUE_STOP_GRACE_SECONDS = 30.0


@dataclass
class AppState:
    """What one process's app holds; the serve command reaches it as ``app.state``.

    ``draining`` is set on SIGTERM: readiness answers 503, new executions are refused
    (503 FLK-0801) and the queue worker claims nothing more, while in-flight runs finish;
    :meth:`close` then waits for the worker's runs.
    """

    settings: object
    registry: object
    database: object
    execution_service: ExecutionService
    workflows: object
    executors: object
    secret_box: object
    address_policy: object
    draining: threading.Event = field(default_factory=threading.Event)
    started_monotonic: float = field(default_factory=time.monotonic)
    # The process Redactor (the execution service's): every secret resolved or obtained
    # here is scrubbed from responses, records and every log record.
    redactor: object = None
    # What the app was built from (flowker.runtime): its database, audit log and services.
    runtime: Runtime | None = None
    # The API keys stored in the database (flowker.catalog.api_keys.ApiKeyStore).
    api_keys: ApiKeyStore | None = None
    # record_forbidden(req, principal, operation_id, reason): the audit entry of a 403.
    record_forbidden: Callable | None = None
    # The worker that claims and runs queued executions in this process (flowker.queue);
    # None: queued runs are left to other processes (`flowker serve --no-worker`).
    queue_worker: QueueWorker | None = None
    # Reads the queue depth into the metrics (flowker.queue.depth); started by `flowker serve`.
    queue_depth_sampler: QueueDepthSampler | None = None

    @property
    def is_draining(self) -> bool:
        return self.draining.is_set()

    def start_draining(self) -> None:
        self.draining.set()
        if self.queue_worker is not None:
            self.queue_worker.stop_claiming()

    def start_queue_depth_sampling(self) -> None:
        """Read the queue depth into the metrics every few seconds (server workers: every
        process samples, so the figure is there with or without a queue worker)."""
        from flowker.queue.depth import QueueDepthSampler

        if self.queue_depth_sampler is None:
            self.queue_depth_sampler = QueueDepthSampler(self.execution_service).start()

    def read_queue_depth(self) -> None:
        """The queue depth into the metrics now (a scrape of /metrics); a database error
        leaves the last reading."""
        from flowker.queue.depth import QueueDepthSampler

        if not self.metrics.enabled:
            return
        try:
            QueueDepthSampler(self.execution_service).sample()
        except Exception:  # noqa: BLE001 - the metrics still answer; the sampler tries again
            logger.warning("could not read the queue depth for /metrics", exc_info=True)

    def wake_queue(self) -> None:
        """This process just queued a run: its worker (if any) looks at once."""
        if self.queue_worker is not None:
            self.queue_worker.wake()

    @property
    def metrics(self):
        """The runtime's Metrics (flowker.observability.metrics): recorded here, shown at /metrics."""
        return self.execution_service.metrics

    @property
    def audit_log(self):
        """The runtime's AuditLog: appends, checkpoints and verification with its keys."""
        return self.runtime.audit_log if self.runtime is not None else None

    def close(self) -> None:
        """Stop the queue worker (its runs get a grace period to end), then close the
        runtime: the service's threads and sessions, then its database if it opened it."""
        if self.queue_depth_sampler is not None:
            self.queue_depth_sampler.stop()
        if self.queue_worker is not None:
            self.queue_worker.stop(QUEUE_STOP_GRACE_SECONDS)
        if self.runtime is not None:
            self.runtime.close()
        else:
            self.execution_service.close()


class FlowkerApp(falcon.App):
    """A falcon.App that carries its :class:`AppState` (falcon.App itself has __slots__)."""

    state: AppState


def create_app(
    settings,
    *,
    registry=None,
    execution_service=None,
    database=None,
    runtime: Runtime | None = None,
    bearer_authenticator: BearerAuthenticator | None = None,
    tracing=None,
    queue_concurrency: int = 0,
    log_requests: bool = True,
) -> FlowkerApp:
    """The WSGI app for ``settings``, on ``runtime`` (default: ``Runtime.from_settings``
    with ``registry``, ``execution_service``, ``database`` and ``tracing``; see :mod:`flowker.runtime`).
    The schema must already be migrated (``flowker db upgrade`` or the serve command's
    start-up). ``settings.api_keys`` must not be empty (development:
    ``settings.with_generated_api_key()`` first).

    ``bearer_authenticator(token) -> Principal`` checks ``Authorization: Bearer`` tokens
    (raising :class:`flowker.errors.Unauthorized` for a bad one); None: bearer tokens get 401.
    ``queue_concurrency``: above 0, the app starts a queue worker (flowker.queue) with that
    many run threads, which claims queued executions (``flowker serve`` does, per worker
    process, unless ``--no-worker``); 0: queued runs wait for another process's worker.
    ``log_requests``: one access line per
    request (``flowker serve --no-access-log`` turns it off; the metrics count either way).
    """
    if not settings.api_keys:
        raise ConfigurationError("no API keys: set FLOWKER_API_KEYS (development: Settings.with_generated_api_key())")
    if runtime is None:
        from flowker.runtime import Runtime

        runtime = Runtime.from_settings(
            settings, registry=registry, database=database, execution_service=execution_service, tracing=tracing
        )
    from flowker.catalog.api_keys import ApiKeyStore

    database = runtime.database
    execution_service = runtime.execution_service
    api_keys = ApiKeyStore(database, runtime.audit_log, reserved_names=[key.name for key in settings.api_keys])
    install_log_redaction(runtime.redactor)  # idempotent; held weakly, so it ends with the app
    state = AppState(
        settings=settings,
        registry=runtime.registry,
        database=database,
        execution_service=execution_service,
        workflows=runtime.workflows,
        executors=runtime.executors,
        secret_box=runtime.secret_box,
        address_policy=runtime.address_policy,
        redactor=runtime.redactor,
        runtime=runtime,
        api_keys=api_keys,
    )
    database_middleware = DatabaseMiddleware(database)
    state.record_forbidden = _forbidden_recorder(state, database_middleware)
    if bearer_authenticator is None:
        from flowker.api.bearer import people_authenticator

        # FLOWKER_OIDC_*: people's JWTs, keys fetched through this runtime's SSRF rules.
        bearer_authenticator = people_authenticator(settings, runtime.address_policy)

    # First: its process_response runs last and logs and counts the final status.
    access = AccessMiddleware(state.metrics, log_requests=log_requests)
    middleware: list = [access, ClientMiddleware(settings.trusted_proxies)]
    if settings.production:
        middleware.append(HttpsMiddleware())
    middleware += [
        CorsMiddleware(settings.cors_allowed_origins),
        BodyLimitMiddleware(settings.max_body_bytes),
        AuthenticationMiddleware(
            settings.api_keys,
            key_lookup=api_keys.authenticate,
            bearer_authenticator=bearer_authenticator,
            open_connection=database_middleware.open_connection,
            on_refused=_refusal_recorder(state, database_middleware),
        ),
        database_middleware,
        AuthorizationMiddleware(
            operation_ids(), on_forbidden=state.record_forbidden, public_routes=public_console_routes()
        ),
        QueryParamsMiddleware(allowed_query_parameters()),
    ]
    app = FlowkerApp(middleware=middleware)
    app.state = state
    app.req_options.strip_url_path_trailing_slash = True
    api_errors.install(app)
    for template, resource in build_routes(state) + console_routes(settings):
        app.add_route(template, resource)
    access.find_route = app._router.find  # falcon's router: its find() is public, the attribute is not
    if queue_concurrency > 0:
        from flowker.queue.worker import QueueWorker

        # Started here, in the process that serves: gunicorn builds each worker's app after the fork.
        state.queue_worker = QueueWorker(
            execution_service, concurrency=queue_concurrency, depth_sample_seconds=None
        ).start()
    return app


def check_settings(settings) -> None:
    """Build, once and to throw away, everything :func:`create_app` builds from settings,
    so a bad value stops ``flowker serve`` before it binds (exit 2, the setting named)
    instead of failing every worker after it says "listening"."""
    from flowker.api.middleware import parse_networks
    from flowker.security.secrets import SecretBox
    from flowker.security.ssrf import AddressPolicy

    for name, entries in (("FLOWKER_TRUSTED_PROXIES", settings.trusted_proxies),):
        try:
            parse_networks(entries)
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None
    # Fernet keys parse (SecretKeyError names FLOWKER_SECRET_KEY and the key's position only).
    SecretBox.from_settings(settings, create_key_file=False)
    try:
        policy = AddressPolicy.from_settings(settings)
    except ValueError as exc:
        raise ConfigurationError(f"FLOWKER_ALLOW_PRIVATE_NETWORKS: {exc}") from None
    if settings.oidc_issuer:
        from flowker.errors import SSRFBlockedError

        try:
            policy.check_url_shape(settings.oidc_issuer)
        except SSRFBlockedError as exc:
            raise ConfigurationError(f"FLOWKER_OIDC_ISSUER: {exc.message}") from None
    from flowker.tracing import tracing_from_settings

    tracing_from_settings(settings)  # OTEL_* variables Flowker cannot honour (another exporter)


def operation_ids() -> dict[tuple[str, str], str]:
    """(route template, METHOD) -> operationId, from the OpenAPI operation table."""
    from flowker.api.openapi import OPERATIONS

    return {(op.path, op.method): op.operation_id for op in OPERATIONS}


def _append_access_denied(state: AppState, database_middleware: DatabaseMiddleware, req, **entry) -> None:
    """One ACCESS_DENIED audit entry for ``req``, in a write transaction of its own."""
    from flowker.storage.database import bound_to, write_transaction

    database = database_middleware.database
    database_middleware.open_connection(req)
    with bound_to(database), write_transaction(database):
        state.audit_log.append(
            "ACCESS_DENIED",
            "ACCESS",
            "FAILED",
            "operation",
            context={"method": req.method, "path": req.path[:500]},
            **entry,
        )


def _forbidden_recorder(state: AppState, database_middleware: DatabaseMiddleware):
    """Every 403 for a role or scope lands in the audit chain, naming who and what."""

    def record(req, principal, operation_id: str, reason: str) -> None:
        _append_access_denied(
            state,
            database_middleware,
            req,
            resource_id=operation_id,
            actor=req.context.actor,
            metadata={"reason": reason, "roles": sorted(principal.roles)},
        )

    return record


def _refusal_recorder(state: AppState, database_middleware: DatabaseMiddleware):
    """A 403 answered while checking the credential (a person whose roles claim maps to
    no role) lands in the audit chain too, naming that person."""

    def record(req, refusal) -> None:
        from flowker.audit.chain import Actor

        actor_type, actor_id = getattr(refusal, "actor_type", None), getattr(refusal, "actor_id", None)
        if actor_type is None or actor_id is None:
            return
        _append_access_denied(
            state,
            database_middleware,
            req,
            resource_id=f"{req.method} {req.path[:200]}",
            actor=Actor(type=actor_type, id=actor_id, ip=req.context.client_ip),
            metadata={"reason": refusal.message, "roles": []},
        )

    return record


def allowed_query_parameters() -> dict:
    """(route template, METHOD) -> query parameter names, from the OpenAPI operation table."""
    from flowker.api.openapi import OPERATIONS

    return {
        (op.path, op.method): frozenset(p["name"] for p in op.parameters if p["in"] == "query")
        for op in OPERATIONS
        if not op.open_query
    }


def build_routes(state: AppState) -> list[tuple[str, object]]:
    """Every route of the API. The OpenAPI document must describe each one (tested)."""
    from flowker.api import (
        api_keys,
        audit,
        catalog,
        dashboards,
        execution_retry,
        executions,
        executors,
        health,
        me,
        metrics,
        openapi,
        webhooks,
        workflow_versions,
        workflows,
    )

    return [
        ("/health", health.Health(state)),
        ("/health/live", health.Live(state)),
        ("/health/ready", health.Ready(state)),
        ("/version", health.Version(state)),
        ("/openapi.json", openapi.OpenApiDocument(state)),
        ("/metrics", metrics.MetricsExposition(state)),
        ("/v1/me", me.Me(state)),
        ("/v1/workflows", workflows.Collection(state)),
        ("/v1/workflows/{workflow_id}", workflows.Item(state)),
        ("/v1/workflows/{workflow_id}/activate", workflows.Transition(state, "activate")),
        ("/v1/workflows/{workflow_id}/deactivate", workflows.Transition(state, "deactivate")),
        ("/v1/workflows/{workflow_id}/draft", workflows.Transition(state, "draft")),
        ("/v1/workflows/{workflow_id}/clone", workflows.Clone(state)),
        ("/v1/workflows/{workflow_id}/versions", workflow_versions.Collection(state)),
        ("/v1/workflows/{workflow_id}/versions/{version}", workflow_versions.Item(state)),
        ("/v1/workflows/{workflow_id}/executions", executions.Start(state)),
        ("/v1/executions", executions.Collection(state)),
        ("/v1/executions/{execution_id}", executions.Item(state)),
        ("/v1/executions/{execution_id}/results", executions.Results(state)),
        ("/v1/executions/{execution_id}/steps", executions.Steps(state)),
        ("/v1/executions/{execution_id}/retry", execution_retry.Retry(state)),
        ("/v1/executors", executors.Collection(state)),
        ("/v1/executors/{executor_id}", executors.Item(state)),
        ("/v1/executors/{executor_id}/enable", executors.Status(state, "enable")),
        ("/v1/executors/{executor_id}/disable", executors.Status(state, "disable")),
        ("/v1/executors/{executor_id}/test", executors.Test(state)),
        ("/v1/webhooks/{path:path}", webhooks.Webhook(state)),
        ("/v1/audit-events", audit.Collection(state)),
        ("/v1/audit-events/{event_id}", audit.Item(state)),
        ("/v1/audit-events/{event_id}/verify", audit.Verify(state)),
        ("/v1/catalog/auth-types", catalog.AuthTypes(state)),
        ("/v1/catalog/auth-types/{type_name}", catalog.AuthType(state)),
        ("/v1/catalog/action-types", catalog.ActionTypes(state)),
        ("/v1/dashboards/workflows/summary", dashboards.WorkflowSummary(state)),
        ("/v1/dashboards/executions", dashboards.Executions(state)),
        ("/v1/api-keys", api_keys.Collection(state)),
        ("/v1/api-keys/{name}", api_keys.Item(state)),
    ]
