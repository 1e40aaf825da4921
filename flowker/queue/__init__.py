"""The execution queue (DESIGN §16): queued executions claimed and run by workers.

:mod:`flowker.queue.claim` claims (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a write
transaction on SQLite, per-workflow ``concurrency`` respected);
:mod:`flowker.queue.notify` waits for work without polling hot (``LISTEN`` on
PostgreSQL, a backoff on SQLite); :mod:`flowker.queue.worker` runs claimed executions
in a bounded thread pool (``flowker worker``, and ``flowker serve`` unless
``--no-worker``). Queued executions are created by
``ExecutionService.enqueue`` (flowker.runner.service).
"""
