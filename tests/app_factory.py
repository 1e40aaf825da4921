"""What the API and hardening tests share (imported by name: ``tests/`` is on sys.path
through its conftest): their settings, and apps built on one database, each shut down
after the test."""

from __future__ import annotations


def app_settings(database_url: str, **overrides):
    """Settings for an app under test: no retry waits, one attempt; ``overrides`` (the
    suite's keys first, then the test's) win."""
    from flowker.settings import Settings

    values = {"database_url": database_url, "retry_base_seconds": "0", "retry_max_attempts": "1"}
    values.update(overrides)
    return Settings.from_mapping(values)


class AppFactory:
    """Builds apps with ``make_settings(database_url, **overrides)``; :meth:`close` shuts
    every app it built down. Subclasses give it the call their tests use."""

    def __init__(self, database, database_url, registry, make_settings):
        self.database = database
        self.database_url = database_url
        self.registry = registry
        self.make_settings = make_settings
        self.apps = []

    def settings(self, **overrides):
        return self.make_settings(self.database_url, **overrides)

    def build(self, settings, **options):
        from flowker.api.app import create_app
        from flowker.runtime import Runtime

        # The composition root, on the suite's database (the runtime does not close it).
        runtime = Runtime.from_settings(settings, registry=self.registry, database=self.database)
        app = create_app(settings, runtime=runtime, **options)
        self.apps.append(app)
        return app

    def close(self):
        for app in self.apps:
            app.state.close()
