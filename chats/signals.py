"""What ``chats`` tells the apps above it (connected in their ``AppConfig.ready()``)."""

from django.dispatch import Signal

# Sent after commit when a conversation is created. Arguments: chat_id, workspace_id.
chat_created = Signal()

# Sent after commit when a conversation's title changes by hand. Arguments: chat_id, workspace_id.
chat_renamed = Signal()

# Sent after commit when a conversation goes to the trash. Arguments: chat_id, workspace_id.
chat_trashed = Signal()

# Sent after commit when a conversation comes back from the trash. Arguments: chat_id, workspace_id.
chat_restored = Signal()

# Sent after commit when a conversation is archived (out of the lists) or taken back out of the
# archive. Arguments: chat_id, workspace_id, archived.
chat_archived = Signal()
