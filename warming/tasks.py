from __future__ import annotations

from celery import shared_task


@shared_task(name="warming.dispatch", ignore_result=True)
def dispatch() -> dict:
    """Beat's tick: claim every due schedule and send one ``warm_batch`` per batch."""
    from warming.dispatch import warming_dispatch_due

    return warming_dispatch_due()


@shared_task(name="warming.warm_batch", ignore_result=True)
def warm_batch(chat_ids: list[str], token: str) -> dict:
    from warming.dispatch import warm_run

    outcomes: dict[str, int] = {}
    for chat_id in chat_ids:
        outcome = warm_run(chat_id=chat_id, token=token).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
