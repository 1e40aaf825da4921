"""Storage: the database proxy, models, migrations and compiled statements (no domain rules)."""
