"""peewee models for everything Flowker stores.

All timestamps are naive UTC datetimes (see :func:`utcnow`). JSON columns are text,
so both SQLite and PostgreSQL store exactly the same bytes.
"""

from __future__ import annotations

import datetime as _dt
import json
import peewee

from flowker.ids import uuid7
from flowker.storage.database import database_proxy


def utcnow() -> _dt.datetime:
    """Naive UTC now, with microseconds, the form every DateTimeField stores."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    """A UUIDv7: time-ordered, so new rows append to their indexes (see flowker.ids)."""
    return uuid7()


# json.dumps(value, separators=(",", ":"), ensure_ascii=False) without building an encoder
# per value (the same text: dumps builds exactly this encoder and calls encode).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class JSONField(peewee.TextField):
    """A JSON document kept as compact text."""

    def db_value(self, value):
        if value is None:
            return None
        return _COMPACT_JSON.encode(value)

    def python_value(self, value):
        if value is None:
            return None
        return json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Workflow(BaseModel):
    """The current state of a workflow; every saved spec is also a WorkflowVersion."""

    id = peewee.CharField(primary_key=True, max_length=36, default=new_id)
    name = peewee.CharField(max_length=100, unique=True)
    description = peewee.TextField(null=True)
    status = peewee.CharField(max_length=16, index=True, default="draft")  # draft|active|inactive
    version = peewee.IntegerField(default=1)
    # The REST body without `kind`: name, description, nodes, edges, metadata.
    spec = JSONField()
    # sha256 of the canonical spec: lets `flowker apply` see "unchanged" cheaply.
    spec_hash = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow, index=True)


class WorkflowVersion(BaseModel):
    """An immutable snapshot: executions run against the version they started with."""

    workflow_id = peewee.CharField(max_length=36, index=True)
    version = peewee.IntegerField()
    spec = JSONField()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("workflow_id", "version"), True),)


class WebhookRoute(BaseModel):
    """Which active workflow owns a webhook method+path; read by every process."""

    method = peewee.CharField(max_length=10)
    path = peewee.CharField(max_length=500)
    workflow_id = peewee.CharField(max_length=36, index=True)

    class Meta:
        indexes = ((("method", "path"), True),)


class Executor(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=36, default=new_id)
    name = peewee.CharField(max_length=100, unique=True)
    description = peewee.TextField(null=True)
    base_url = peewee.CharField(max_length=500)
    status = peewee.CharField(max_length=16, index=True, default="active")  # active|disabled
    version = peewee.IntegerField(default=1)
    # The REST body without `kind`; literal secrets inside are Fernet-encrypted.
    spec = JSONField()
    spec_hash = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow, index=True)
    last_tested_at = peewee.DateTimeField(null=True)


class Execution(BaseModel):
    """Indexes are few on purpose, as on the audit table: each costs every start and end a
    page write. ``workflow_id`` is served by the (workflow_id, idempotency_key) index, the
    lease sweep by ``status`` (few rows are running), and nothing filters on completion."""

    id = peewee.CharField(primary_key=True, max_length=36, default=new_id)
    workflow_id = peewee.CharField(max_length=36)
    workflow_version = peewee.IntegerField()
    status = peewee.CharField(max_length=16, index=True)  # queued|running|completed|failed
    input_data = JSONField(null=True)
    final_output = JSONField(null=True)
    error_message = peewee.TextField(null=True)
    idempotency_key = peewee.CharField(max_length=255, null=True)
    # sha256 of the canonical request body: the same key with another body is refused.
    request_hash = peewee.CharField(max_length=64, null=True)
    current_step = peewee.IntegerField(default=0)
    total_steps = peewee.IntegerField(default=0)
    # The lease: which process runs it, and until when its heartbeat holds.
    owner = peewee.CharField(max_length=200, null=True)
    lease_expires_at = peewee.DateTimeField(null=True)
    started_at = peewee.DateTimeField(default=utcnow, index=True)
    completed_at = peewee.DateTimeField(null=True)
    # The OpenTelemetry trace of the run (32 hex digits), when it was traced and sampled.
    trace_id = peewee.CharField(max_length=32, null=True)
    # The queue (flowker.queue): when the run was queued (NULL: started at once, in the
    # request); ``started_at`` is then the time a worker claimed it.
    queued_at = peewee.DateTimeField(null=True)
    # The failed execution this one retries (POST /v1/executions/{id}/retry).
    retry_of = peewee.CharField(max_length=36, null=True)
    # How many times the run was resumed after its owner died.
    resumes = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    # The W3C traceparent a queued run continues (the request that queued it).
    trace_parent = peewee.CharField(max_length=55, null=True)

    class Meta:
        indexes = ((("workflow_id", "idempotency_key"), True),)


class StepResult(BaseModel):
    # No index of its own: the unique (execution, step_number) index serves it.
    execution = peewee.ForeignKeyField(Execution, backref="steps", on_delete="CASCADE", index=False)
    step_number = peewee.IntegerField()
    node_id = peewee.CharField(max_length=100)
    node_name = peewee.CharField(max_length=200)
    node_type = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16)  # completed|failed|skipped
    input_data = JSONField(null=True)
    output = JSONField(null=True)
    error_message = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    duration_ms = peewee.IntegerField(default=0)
    # Executor calls: {method, url (no secrets), statusCode, attempts: [...]}.
    call_details = JSONField(null=True)
    started_at = peewee.DateTimeField(default=utcnow)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("execution", "step_number"), True),)


class AuditEntry(BaseModel):
    """One link of the hash chain. Append-only: database triggers refuse UPDATE/DELETE.

    The columns repeat values of the hashed ``canonical`` document so the API can filter
    on them; verification checks that they agree. Indexes are few on purpose: each one
    costs every append a page write. Unique ``sequence`` and ``previous_hash`` make a fork
    impossible to commit. See flowker.audit.canonical for the hashing.
    """

    # Position in the chain, 1, 2, 3... and the primary key (on SQLite the rowid itself, so
    # rows are stored in chain order and a sequence needs no index of its own).
    sequence = peewee.BigIntegerField(primary_key=True)
    # UUIDv7 (time-ordered, so its unique index grows at one end).
    event_id = peewee.CharField(max_length=36, unique=True)
    event_type = peewee.CharField(max_length=64, index=True)
    action = peewee.CharField(max_length=32)
    result = peewee.CharField(max_length=16)
    resource_type = peewee.CharField(max_length=32)
    resource_id = peewee.CharField(max_length=255, index=True)
    actor_type = peewee.CharField(max_length=32)
    actor_id = peewee.CharField(max_length=255)
    actor_ip = peewee.CharField(max_length=45)
    # UTC, fixed millisecond precision, e.g. 2026-11-29T12:00:00.123Z (sorts as text).
    timestamp = peewee.CharField(max_length=32, index=True)
    # RFC 8785 canonical JSON of the whole entry: exactly the bytes that were hashed.
    canonical = peewee.TextField()
    previous_hash = peewee.CharField(max_length=64, unique=True)
    hash = peewee.CharField(max_length=64)


class AuditCheckpoint(BaseModel):
    """A signed statement of the chain head at a sequence number (see flowker.audit.checkpoints)."""

    id = peewee.BigAutoField()
    sequence = peewee.BigIntegerField(unique=True)
    head_hash = peewee.CharField(max_length=64)
    key_id = peewee.CharField(max_length=64)
    created_at = peewee.CharField(max_length=32)
    # RFC 8785 canonical JSON of {createdAt, headHash, interval, keyId, sequence, type, v}:
    # exactly the bytes that were signed.
    statement = peewee.TextField()
    # base64 Ed25519 signature of `statement`.
    signature = peewee.TextField()
    # The checkpoint chain (statement version 2): sha256 of the previous checkpoint's
    # statement, and the number of entries covered. NULL on version-1 checkpoints.
    previous_checkpoint_hash = peewee.CharField(max_length=64, null=True)
    entry_count = peewee.BigIntegerField(null=True)


class CircuitBreakerState(BaseModel):
    """One executor's circuit breaker, shared by every process and host (flowker.runner.breakers).

    Times are Unix seconds (``time.time()``): hosts compare them with their own clocks.
    """

    executor_id = peewee.CharField(primary_key=True, max_length=36)
    state = peewee.CharField(max_length=16, default="closed")  # closed|open (half-open: open past opened_until)
    consecutive_failures = peewee.IntegerField(default=0)
    opened_until = peewee.DoubleField(default=0.0)
    half_open_in_flight = peewee.IntegerField(default=0)  # trial calls running now
    updated_at = peewee.DoubleField(default=0.0)


class ApiKeyRecord(BaseModel):
    """An API key made with ``flowker keys create`` or ``POST /v1/api-keys``: never the key.

    The key is ``flk_<lookup_id>_<secret>``; ``lookup_id`` finds the row (it is no secret),
    ``key_hash`` is the SHA-256 of the whole key, compared in constant time. Revoked keys
    stay (revoked_at set) until a new key takes the name.
    """

    id = peewee.CharField(primary_key=True, max_length=36, default=new_id)
    name = peewee.CharField(max_length=100, unique=True)
    lookup_id = peewee.CharField(max_length=32, unique=True)
    key_hash = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)
    workflows = JSONField(null=True)  # workflow names it is limited to; NULL: every workflow
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=255)
    expires_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    # Written at most once per key per interval by each process (flowker.catalog.api_keys).
    last_used_at = peewee.DateTimeField(null=True)
    # Set when the key's expiry was recorded in the audit chain (once).
    expiry_recorded_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_key"


class WebhookDelivery(BaseModel):
    """A signed webhook message already accepted (flowker.storage.webhook_deliveries): the
    unique key makes a replay fail on every process and host. Rows past ``expires_at``
    are pruned; by then a timestamped message is refused for its age anyway."""

    # sha256 of (workflow id, scheme, the sender's message id): fixed length, and the
    # sender's string (any length, any bytes) is never stored.
    key = peewee.CharField(primary_key=True, max_length=64)
    workflow_id = peewee.CharField(max_length=36)
    received_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)


class ScheduleTick(BaseModel):
    """A schedule tick that fired (flowker.schedules): the unique (workflow, tick) makes each
    tick fire once across every process and host. The row is inserted in the same write
    transaction as the queued execution it starts; a second insert (another scheduler that
    computed the same tick) inserts nothing, so that scheduler enqueues nothing. The latest
    tick of a workflow is where its next pass starts; older rows are pruned."""

    id = peewee.BigAutoField()
    workflow_id = peewee.CharField(max_length=36)
    tick = peewee.DateTimeField()  # naive UTC, whole seconds
    execution_id = peewee.CharField(max_length=36, null=True)
    outcome = peewee.CharField(max_length=16)  # queued | refused (the run's input was refused)
    recorded_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("workflow_id", "tick"), True),)


class SchemaMigration(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DateTimeField(default=utcnow)


ALL_MODELS = (
    Workflow,
    WorkflowVersion,
    WebhookRoute,
    Executor,
    Execution,
    StepResult,
    AuditEntry,
    AuditCheckpoint,
    CircuitBreakerState,
    ApiKeyRecord,
    WebhookDelivery,
    ScheduleTick,
)
