from __future__ import annotations

from celery import shared_task


@shared_task(name="streams.run_stream", ignore_result=True, acks_late=False)
def run_stream(stream_id: str) -> str:
    from streams.services import stream_run

    return stream_run(stream_id=stream_id)


@shared_task(name="streams.sweep", ignore_result=True)
def sweep_streams() -> dict:
    from streams.services import streams_sweep

    return streams_sweep()
