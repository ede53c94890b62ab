from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0009_chat_visit"),
    ]

    operations = [
        migrations.AddField(
            model_name="chat",
            name="tools",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="message",
            name="tool_calls",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
