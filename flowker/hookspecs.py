"""Every Flowker hook, in one module.

Plugins implement these with ``@flowker.hookimpl`` and are found through the
``flowker`` entry-point group. Flowker's own auth and action types are registered
through exactly the same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from flowker.registry import Registry

PROJECT_NAME = "flowker"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def flowker_register_auth_types(registry: "Registry") -> None:
    """Register authentication types for executors.

    Call ``registry.register_auth_type(SomeAuthType())`` once per type, where the
    type subclasses :class:`flowker.auth.base.AuthType`. Two plugins registering the
    same name is an error that names both distributions.
    """


@hookspec
def flowker_register_action_types(registry: "Registry") -> None:
    """Register action node types (``actionType`` in workflow specs).

    Call ``registry.register_action_type(SomeActionType())`` once per type, where the
    type subclasses :class:`flowker.actions.ActionType`.
    """
