from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ChatsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chats"

    def ready(self):
        from chats import search  # it reads the models: imported once they are loaded

        # SQLite drops a table's triggers when a migration rebuilds the table: put the search's back.
        post_migrate.connect(search.index_ensure_after_migrate, sender=self)
