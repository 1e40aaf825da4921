"""``flowker test``: WorkflowTest files (DESIGN 12) run offline.

A case runs the real engine, executor clients, retries, breakers and auth types, with
the HTTP transport replaced by the case's fixtures (:mod:`.transport`) and time by a
:class:`~flowker.runner.clock.VirtualClock`: no socket is opened, no database is used
and nothing sleeps. :mod:`.cases` reads the files, :mod:`.harness` runs them,
:mod:`.matching` compares, :mod:`.reports` writes coverage and JUnit XML, and
:mod:`.recording` turns a real run into a case (``flowker run --record``).
"""
