"""The tamper-evident audit chain.

* :mod:`flowker.audit.chain`: ``append`` (joins the caller's transaction), ``Actor``,
  ``AuditLog`` (automatic signed checkpoints; one per runtime), ``verify_chain``,
  ``entry_to_dict``.
* :mod:`flowker.audit.canonical`: exactly what is hashed (RFC 8785, genesis, no floats).
* :mod:`flowker.audit.checkpoints`: Ed25519 signed checkpoints and keys.
* :mod:`flowker.audit.verify`: verifying the database; :mod:`flowker.audit.export`:
  JSON Lines export and offline verification.
* :mod:`flowker.audit.events`: event types, actions, results.
* :mod:`flowker.audit.store`: the SQL, for SQLite and PostgreSQL.
"""
