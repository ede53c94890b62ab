from __future__ import annotations

from celery import shared_task


@shared_task(name="mothership.purge_trash", ignore_result=True)
def purge_trash() -> dict:
    from mothership.services import trash_purge

    return trash_purge()
