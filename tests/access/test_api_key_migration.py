"""Migration 5 adds the api_key table to a database made before it (both backends)."""

from __future__ import annotations

from flowker.storage.migrations import LATEST_VERSION, current_version, upgrade
from flowker.storage.models import ApiKeyRecord, SchemaMigration


def test_a_version_4_database_gains_the_api_key_table(database):
    database.execute_sql(f"DROP TABLE {ApiKeyRecord._meta.table_name}")
    SchemaMigration.delete().where(SchemaMigration.version == 5).execute()
    assert 5 not in {row.version for row in SchemaMigration.select()}
    assert upgrade(database) == [5]
    assert current_version(database) == LATEST_VERSION
    assert ApiKeyRecord._meta.table_name in database.get_tables()
    columns = {column.name for column in database.get_columns(ApiKeyRecord._meta.table_name)}
    assert {"name", "lookup_id", "key_hash", "role", "workflows", "expires_at", "revoked_at", "last_used_at"} <= columns
    assert not any("key" == column for column in columns)  # the key itself has no column
    assert upgrade(database) == []
