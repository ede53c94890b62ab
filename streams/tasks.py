from __future__ import annotations

from celery import shared_task


@shared_task(name="streams.run_stream", ignore_result=True, acks_late=False)
def run_stream(stream_id: str) -> str:
    from streams.services import stream_run

    return stream_run(stream_id=stream_id)
