"""Full-text search: on PostgreSQL a generated tsvector of each message with a GIN index, and a GIN
index on titles; on SQLite an FTS5 table kept in step by triggers, filled from the existing rows."""

from django.db import migrations

from chats import search


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for statement in search.POSTGRES_INSTALL:
            schema_editor.execute(statement)
    elif vendor == "sqlite":
        search.sqlite_install(schema_editor.execute)


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": search.POSTGRES_UNINSTALL, "sqlite": search.SQLITE_UNINSTALL}.get(vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("chats", "0013_messages_as_one_branch")]

    operations = [migrations.RunPython(install, uninstall)]
