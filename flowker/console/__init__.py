"""The web console (DESIGN §15): HTML shells and static assets at ``/ui/``, served by the
API's own app. The pages are public (no credential to load them); every piece of data
comes from the ``/v1`` API, called by the page's scripts with the signed-in credential."""

from flowker.console.pages import CONSOLE_PREFIX, console_routes, public_console_routes

__all__ = ["CONSOLE_PREFIX", "console_routes", "public_console_routes"]
