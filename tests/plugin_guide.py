"""The plugin guide's (plugins/README.md) ``acme`` example, loaded from the guide itself:
the tests run the code a plugin author copies, so the guide cannot drift from it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "plugins" / "README.md"
MODULE_NAME = "flowker_plugin_guide_acme"


def acme_example() -> types.ModuleType:
    """The first ```python block of the guide (the ``acme`` type), as a module."""
    module = sys.modules.get(MODULE_NAME)
    if module is not None:
        return module
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    source = next(block for block in blocks if "class AcmeAuth(AuthType)" in block)
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = str(GUIDE)
    exec(compile(source, f"{GUIDE}:acme example", "exec"), module.__dict__)  # noqa: S102 - our own guide
    sys.modules[MODULE_NAME] = module
    return module
