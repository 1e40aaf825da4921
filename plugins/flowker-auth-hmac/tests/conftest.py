# The Flowker plugin author kit's fixtures (auth_context, local_server, registered_secrets).
pytest_plugins = ["flowker.testing"]
