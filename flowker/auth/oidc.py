"""OIDC auth types (oidc_client_credentials, oidc_user): being written by the auth work."""

from flowker.hookspecs import hookimpl


@hookimpl
def flowker_register_auth_types(registry):
    """Registers nothing until the OIDC types land."""
