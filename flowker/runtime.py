"""The composition root: everything one Flowker process builds from its settings.

::

    runtime = Runtime.from_settings(settings)        # opens no connection
    try:
        with runtime.bound(), runtime.database.connection_context():
            runtime.workflows.create(document, actor)
        runtime.execution_service.execute(workflow_id, {}, actor=actor)
    finally:
        runtime.close()

``create_app``, the CLI commands and the tests' app factory all build a :class:`Runtime`
and nothing else: the database, the plugin registry, the redactor, the secret box, the
address and secret-reference policies, the audit log, the stores and the execution
service are assembled here once, and each part is handed what it uses (the audit log to
every appender). A runtime belongs to one process: gunicorn workers build theirs after
the fork (``FlowkerApplication.load``), and nothing here connects until first use.

Several runtimes on several databases may share a process: each one's execution
service, threads and requests bind the models to its own database for the work they do
(:func:`flowker.storage.database.bound_to`), and each appends with its own audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowker.storage.database import bound_to

if TYPE_CHECKING:
    import peewee

    from flowker.audit.chain import AuditLog
    from flowker.observability.metrics import Metrics
    from flowker.runner.service import ExecutionService
    from flowker.security.redaction import Redactor
    from flowker.catalog.executors import ExecutorStore
    from flowker.catalog.workflows import WorkflowStore


@dataclass
class Runtime:
    """One process's Flowker, built by :meth:`from_settings`, ended by :meth:`close`."""

    settings: Any
    database: peewee.Database
    registry: Any
    redactor: Redactor
    secret_box: Any
    address_policy: Any
    secret_policy: Any
    audit_log: AuditLog
    workflows: WorkflowStore
    executors: ExecutorStore
    execution_service: ExecutionService
    metrics: Metrics
    # The database was opened here (not passed in), so close() closes it.
    owns_database: bool = False
    # Traces (flowker.tracing), built here from the settings unless given: close() then
    # exports what is left and stops them.
    owns_tracing: bool = False

    @classmethod
    def from_settings(
        cls,
        settings,
        *,
        registry=None,
        database=None,
        execution_service=None,
        bind_process: bool = True,
        tracing=None,
        **service_options,
    ) -> "Runtime":
        """Build everything for ``settings``; nothing connects yet.

        ``registry`` defaults to :func:`flowker.plugins.load_registry`; ``database`` to the
        one of ``settings.database_url`` (then closed by :meth:`close`); ``execution_service``
        to one built here with the runtime's database, redactor and audit log
        (``service_options`` go to its constructor), tracing with ``tracing`` (default: the
        ``OTEL_*`` settings', started on first use; flowker.tracing). ``bind_process``: the models use this
        database wherever no runtime is bound (one runtime per process: the usual case).
        """
        from flowker.audit.chain import AuditLog
        from flowker.observability.metrics import Metrics
        from flowker.security.redaction import Redactor
        from flowker.security.secret_policy import SecretReferencePolicy
        from flowker.security.secrets import SecretBox
        from flowker.security.ssrf import AddressPolicy
        from flowker.storage.database import database_proxy, open_database
        from flowker.catalog.executors import ExecutorStore
        from flowker.catalog.workflows import WorkflowStore

        if registry is None:
            from flowker.plugins import load_registry

            registry = load_registry(settings)
        owns_database = database is None
        if database is None:
            database = open_database(settings.database_url)
        secret_box = SecretBox.from_settings(settings)
        address_policy = AddressPolicy.from_settings(settings)
        secret_policy = SecretReferencePolicy.from_settings(settings)
        # One process's metrics: the given service's, else built here for the service and the log.
        metrics = execution_service.metrics if execution_service is not None else Metrics.from_settings(settings)
        # Appends sign checkpoints with the settings' key, if any.
        audit_log = AuditLog.from_settings(settings, database, metrics=metrics)
        owns_tracing = False
        if execution_service is None:
            from flowker.runner.service import ExecutionService
            from flowker.tracing import tracing_from_settings

            owns_tracing = tracing is None
            # Built last: it registers its redactor with the process's logging (undone by close()).
            execution_service = ExecutionService(
                settings,
                registry,
                redactor=Redactor(),
                database=database,
                audit_log=audit_log,
                metrics=metrics,
                tracing=tracing if tracing is not None else tracing_from_settings(settings),
                **service_options,
            )
        if bind_process:
            database_proxy.initialize(database)
        return cls(
            settings=settings,
            database=database,
            registry=registry,
            # Every secret resolved or obtained by runs is scrubbed with the service's.
            redactor=execution_service.redactor,
            secret_box=secret_box,
            address_policy=address_policy,
            secret_policy=secret_policy,
            audit_log=audit_log,
            workflows=WorkflowStore(registry, secret_box, secret_policy, audit_log),
            executors=ExecutorStore(registry, secret_box, address_policy, secret_policy, audit_log),
            execution_service=execution_service,
            metrics=metrics,
            owns_database=owns_database,
            owns_tracing=owns_tracing,
        )

    def bound(self):
        """A context manager: the models use this runtime's database in the block (the
        execution service and the API's requests bind themselves)."""
        return bound_to(self.database)

    def close(self) -> None:
        """Stop the execution service's threads and sessions, then close the database if
        this runtime opened it. (The API's queue worker is stopped before: AppState.close.)"""
        from flowker.storage.database import close_database

        try:
            self.execution_service.close()
            if self.owns_tracing:
                self.execution_service.tracing.shutdown()
        finally:
            if self.owns_database:
                close_database(self.database)
