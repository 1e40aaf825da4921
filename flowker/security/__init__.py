"""Flowker's defences: nothing here is imported eagerly, so import the module you need.

* :mod:`flowker.security.redaction` - :func:`redact`, :class:`Redactor`, log filters: secrets
  out of responses, logs, error messages, step records and audit payloads.
* :mod:`flowker.security.ssrf` - :class:`AddressPolicy`: which URLs outbound calls may reach.
* :mod:`flowker.security.http` - :func:`new_session`: the hardened, address-pinned session.
* :mod:`flowker.security.secrets` - ``$env``/``$file`` references and Fernet encryption at rest.
"""
