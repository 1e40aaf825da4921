"""Flowker: declarative workflows in YAML, auth plugins, REST and an audit chain."""

__version__ = "0.1.0"


def __getattr__(name):
    # `hookimpl` is looked up lazily so `import flowker` stays cheap and loads no plugin.
    if name == "hookimpl":
        from flowker.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'flowker' has no attribute {name!r}")
