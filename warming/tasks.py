from __future__ import annotations

from collections import Counter

from celery import shared_task


@shared_task(name="warming.dispatch", ignore_result=True)
def dispatch() -> dict:
    """Beat's tick: claim every due schedule and send one ``warm_batch`` per batch."""
    from warming.dispatch import warming_dispatch_due

    return warming_dispatch_due()


@shared_task(name="warming.warm_batch", ignore_result=True)
def warm_batch(chat_ids: list[str], token: str) -> dict:
    """One claimed batch: warmed, recorded in one transaction, pushed after its commit. Counts its outcomes."""
    from warming.dispatch import warm_batch_run

    return dict(Counter(result.outcome for result in warm_batch_run(chat_ids=chat_ids, token=token)))
