"""``flowker`` CLI with a short execution lease, for the multi-server tests.

    python tests/scale/serve_with_lease.py serve --bind 127.0.0.1:0 ...

The lease (how long an execution's owner may stay silent before another process's
start-up recovery fails it) is 60 s in :mod:`flowker.runner.service` and is not a
setting yet. A crash test cannot wait that long, so when ``FLOWKER_EXECUTION_LEASE_SECONDS``
is set and :class:`flowker.settings.Settings` has no ``execution_lease_seconds`` field,
this launcher sets the ExecutionService default before the CLI starts (gunicorn forks its
workers from this process, so they inherit it). Once the setting exists this launcher
changes nothing and the variable is read by Flowker itself.
"""

from __future__ import annotations

import dataclasses
import os


def apply_lease_default() -> None:
    lease = os.environ.get("FLOWKER_EXECUTION_LEASE_SECONDS")
    if not lease:
        return
    from flowker.settings import Settings

    if any(f.name == "execution_lease_seconds" for f in dataclasses.fields(Settings)):
        return  # Flowker reads it itself
    from flowker.runner.service import ExecutionService

    ExecutionService.__init__.__kwdefaults__["lease_seconds"] = float(lease)


if __name__ == "__main__":
    apply_lease_default()
    from flowker.cli import main

    main()
