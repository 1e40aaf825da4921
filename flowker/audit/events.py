"""The vocabulary of audit entries: event types, actions, results, actor and resource types.

All are ``str`` enums, so a member compares equal to its value and can be passed anywhere a
string is expected. :func:`flowker.audit.chain.append` accepts members or plain strings;
strings outside these enums are accepted when they have the same shape (upper-case
identifiers for event types and actions, lower-case ones for actor and resource types), so
a new event type needs no change here, while a typo in a result is refused.
"""

from __future__ import annotations

import enum
import re


class EventType(str, enum.Enum):
    WORKFLOW_CREATED = "WORKFLOW_CREATED"
    WORKFLOW_UPDATED = "WORKFLOW_UPDATED"
    WORKFLOW_ACTIVATED = "WORKFLOW_ACTIVATED"
    WORKFLOW_DEACTIVATED = "WORKFLOW_DEACTIVATED"
    WORKFLOW_DRAFTED = "WORKFLOW_DRAFTED"
    WORKFLOW_DELETED = "WORKFLOW_DELETED"
    WORKFLOW_CLONED = "WORKFLOW_CLONED"
    EXECUTOR_CREATED = "EXECUTOR_CREATED"
    EXECUTOR_UPDATED = "EXECUTOR_UPDATED"
    EXECUTOR_DELETED = "EXECUTOR_DELETED"
    EXECUTOR_ENABLED = "EXECUTOR_ENABLED"
    EXECUTOR_DISABLED = "EXECUTOR_DISABLED"
    EXECUTOR_TESTED = "EXECUTOR_TESTED"
    EXECUTION_QUEUED = "EXECUTION_QUEUED"
    EXECUTION_STARTED = "EXECUTION_STARTED"
    EXECUTION_COMPLETED = "EXECUTION_COMPLETED"
    EXECUTION_FAILED = "EXECUTION_FAILED"
    EXECUTION_INTERRUPTED = "EXECUTION_INTERRUPTED"
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_FAILED = "STEP_FAILED"
    STEP_SKIPPED = "STEP_SKIPPED"
    PROVIDER_CALL_STARTED = "PROVIDER_CALL_STARTED"
    PROVIDER_CALL_COMPLETED = "PROVIDER_CALL_COMPLETED"
    PROVIDER_CALL_FAILED = "PROVIDER_CALL_FAILED"
    # Go Flowker compatibility (its provider configurations are our executors).
    PROVIDER_CONFIG_CREATED = "PROVIDER_CONFIG_CREATED"
    PROVIDER_CONFIG_UPDATED = "PROVIDER_CONFIG_UPDATED"
    PROVIDER_CONFIG_DELETED = "PROVIDER_CONFIG_DELETED"

    def __str__(self) -> str:
        return self.value


class Action(str, enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    ACTIVATE = "ACTIVATE"
    DEACTIVATE = "DEACTIVATE"
    DRAFT = "DRAFT"
    EXECUTE = "EXECUTE"
    ENABLE = "ENABLE"
    DISABLE = "DISABLE"
    TEST = "TEST"
    CLONE = "CLONE"
    RECOVER = "RECOVER"

    def __str__(self) -> str:
        return self.value


class Result(str, enum.Enum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value


class ActorType(str, enum.Enum):
    USER = "user"
    SYSTEM = "system"
    API_KEY = "api_key"
    ANONYMOUS = "anonymous"

    def __str__(self) -> str:
        return self.value


class ResourceType(str, enum.Enum):
    WORKFLOW = "workflow"
    EXECUTOR = "executor"
    EXECUTION = "execution"
    PROVIDER_CONFIG = "provider_config"

    def __str__(self) -> str:
        return self.value


_UPPER_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_LOWER_NAME = re.compile(r"[a-z][a-z0-9_.\-]{0,31}")


def _checked(value, enum_type, pattern: re.Pattern | None, what: str) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise ValueError(f"audit {what} must be a string, not {type(value).__name__}")
    if value in enum_type._value2member_map_:
        return value
    if pattern is not None and pattern.fullmatch(value):
        return value
    raise ValueError(f"audit {what} {value!r} is not valid")


# Plain strings (and members of these enums, which hash and compare as their values) known
# to be valid -> value: the enums' values up front, names of new types as first seen (bounded).
_KNOWN_MAX = 256
_ENUMS = frozenset({EventType, Action, Result, ActorType, ResourceType})


def _validator(enum_type, pattern: re.Pattern | None, what: str):
    known = {member.value: member.value for member in enum_type}

    def value_of(value) -> str:
        kind = type(value)
        if kind is str or kind in _ENUMS:
            checked = known.get(value)
            if checked is not None:
                return checked
        checked = _checked(value, enum_type, pattern, what)
        if kind is str and len(known) < _KNOWN_MAX:
            known[value] = checked
        return checked

    return value_of


event_type_value = _validator(EventType, _UPPER_NAME, "event type")
action_value = _validator(Action, _UPPER_NAME, "action")
result_value = _validator(Result, None, "result")
actor_type_value = _validator(ActorType, _LOWER_NAME, "actor type")
resource_type_value = _validator(ResourceType, _LOWER_NAME, "resource type")
