"""Attachments: files and images in a conversation (docs/attachments.md).

``service`` uploads (type by the bytes, size and quota, images re-encoded), discards and purges;
``selectors`` reads what a member may open, what a send names, and what a prompt carries;
``storage`` is the ``attachments`` storage (a folder, or an S3 bucket).
"""

from chats.attachments.service import AttachmentRefused, attachment_discard, attachment_upload, attachments_purge_unsent

__all__ = ["AttachmentRefused", "attachment_discard", "attachment_upload", "attachments_purge_unsent"]
