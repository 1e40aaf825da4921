"""Action node types: the contract and the four built-ins.

An action node's ``data`` is ``{actionType: <name>, ...config}``. The type validates
its config against ``config_schema`` (``actionType`` removed), compiles its
templates once per workflow version, then runs against the expression variables.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from flowker.expressions import compile_value
from flowker.hookspecs import hookimpl
from flowker.schema_tools import compile_config_schema, config_problems

workflow_logger = logging.getLogger("flowker.workflow")


@dataclass(frozen=True)
class ActionOutcome:
    """What an action produced.

    ``output`` becomes the node's output; ``final_output`` (when not None) becomes the
    execution's final output; ``failure`` (when not None) fails the step and the run.
    """

    output: Any = None
    final_output: Any = None
    failure: str | None = None


class ActionType:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict] = {"type": "object"}

    @functools.cached_property
    def _validator(self):
        return compile_config_schema(self.config_schema)

    def validate_config(self, config: dict) -> list[tuple[str, str]]:
        return config_problems(self._validator, config)

    def compile(self, config: dict) -> Any:
        """Compile the config's templates once; the result is passed to :meth:`run`."""
        return compile_value(config)

    def run(self, compiled: Any, variables: dict) -> ActionOutcome:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} action type {self.name!r}>"


def _config_without_type(data: dict) -> dict:
    return {key: value for key, value in (data or {}).items() if key != "actionType"}


class SetOutputAction(ActionType):
    name = "set_output"
    description = "Set the execution's final output (templates evaluated)."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["output"],
        "properties": {"output": {}},
    }

    def run(self, compiled, variables):
        output = compiled.evaluate(variables)["output"]
        return ActionOutcome(output=output, final_output=output)


class TransformAction(ActionType):
    name = "transform"
    description = "Compute named values from expressions; they become the node's output."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["values"],
        "properties": {"values": {"type": "object", "maxProperties": 200}},
    }

    def run(self, compiled, variables):
        return ActionOutcome(output=compiled.evaluate(variables)["values"])


class LogAction(ActionType):
    name = "log"
    description = "Write a message (templates evaluated) to the workflow log."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "maxLength": 4096},
            "level": {"enum": ["debug", "info", "warning", "error"], "default": "info"},
        },
    }

    def run(self, compiled, variables):
        config = compiled.evaluate(variables)
        level = getattr(logging, config.get("level", "info").upper())
        workflow_logger.log(level, "%s", config["message"])
        return ActionOutcome(output={"message": config["message"], "level": config.get("level", "info")})


class FailAction(ActionType):
    name = "fail"
    description = "End the run as failed with a message (templates evaluated)."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {"message": {"type": "string", "minLength": 1, "maxLength": 4096}},
    }

    def run(self, compiled, variables):
        message = compiled.evaluate(variables)["message"]
        return ActionOutcome(output={"message": message}, failure=message)


def action_config(data: dict) -> dict:
    """An action node's config: its data without ``actionType``."""
    return _config_without_type(data)


@hookimpl
def flowker_register_action_types(registry):
    for action_type in (SetOutputAction(), TransformAction(), LogAction(), FailAction()):
        registry.register_action_type(action_type)
