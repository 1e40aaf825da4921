"""The app factory the API and hardening tests share (imported by name: ``tests/`` is on
sys.path through its conftest): apps built on one database, each shut down after the test."""

from __future__ import annotations


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

        app = create_app(settings, registry=self.registry, database=self.database, **options)
        self.apps.append(app)
        return app

    def close(self):
        for app in self.apps:
            app.state.close()
