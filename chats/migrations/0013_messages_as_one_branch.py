"""Every chat from before branches becomes one branch: each message's parent is the one before it."""

from django.db import migrations

BATCH = 1000


def link_in_order(apps, schema_editor):
    Message = apps.get_model("chats", "Message")
    rows = Message.objects.using(schema_editor.connection.alias).filter(parent__isnull=True)
    pending, chat, previous = [], None, None
    for pk, chat_id in rows.order_by("chat_id", "created_at", "id").values_list("id", "chat_id").iterator(chunk_size=BATCH):
        if chat_id != chat:
            chat, previous = chat_id, None
        if previous is not None:
            pending.append(Message(pk=pk, parent_id=previous))
        previous = pk
        if len(pending) >= BATCH:
            Message.objects.using(schema_editor.connection.alias).bulk_update(pending, ["parent"])
            pending = []
    if pending:
        Message.objects.using(schema_editor.connection.alias).bulk_update(pending, ["parent"])


class Migration(migrations.Migration):
    dependencies = [("chats", "0012_branches_archive_pin")]

    operations = [migrations.RunPython(link_in_order, migrations.RunPython.noop)]
