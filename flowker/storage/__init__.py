"""Storage: the database proxy, models and migrations."""
