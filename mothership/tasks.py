from __future__ import annotations

from celery import shared_task


@shared_task(name="mothership.purge_trash", ignore_result=True)
def purge_trash() -> dict:
    from chats.services import chats_discard_unused
    from mothership.services import purge_due

    outcome = purge_due()  # the old trash, and the uploads never sent
    chats_discard_unused()  # and the new chats nobody ever sent a message to
    return outcome
