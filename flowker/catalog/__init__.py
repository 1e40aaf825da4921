"""The catalog: the domain services over stored executors and workflows.

* :mod:`flowker.catalog.executors`: executor operations (create, update, patch, enable,
  disable, delete) and the helpers both services share: literal secrets encrypted at
  rest and masked on the way out, spec comparison, merge patch, the audit append.
* :mod:`flowker.catalog.workflows`: workflow operations and the lifecycle
  ``draft -> active -> inactive -> draft``, versions, webhook routes.
* :mod:`flowker.catalog.spec_sync`: a folder of specs planned and applied through them
  (``flowker apply``, ``serve --specs``, ``flowker run``).

Layering (docs/architecture.md): storage <- audit <- catalog <- runner <- api / cli.
"""
