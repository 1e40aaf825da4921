"""Access control (DESIGN §13): who a request comes from (:class:`Principal`), the roles,
what each role may do, and which operation needs what (:mod:`flowker.access.routes`).

Outside the layers: nothing here imports storage, audit, catalog, runner, api or cli, so
every layer may use it.
"""

from flowker.access.principal import Permission, Principal, PrincipalKind, Role, parse_role

__all__ = ["Permission", "Principal", "PrincipalKind", "Role", "parse_role"]
