"""Import of conversations into a workspace: this app's JSON export or a ChatGPT ``conversations.json``.

Each format is read by its own module into drafts (``drafts``), checked whole before anything is
written; ``service.chat_import`` writes every draft in one transaction.
"""

from chats.imports.drafts import ImportRejected, ImportTooLarge
from chats.imports.service import chat_import

__all__ = ["ImportRejected", "ImportTooLarge", "chat_import"]
