"""Every write to streams, one module per job: start, run (the worker), finalize, cancel, sweep."""

from streams.services.approve import ToolCallNotWaiting, tool_call_decide
from streams.services.branch import NotInChat, chat_show_branch
from streams.services.cancel import CancelOutcome, stream_cancel, streams_cancel_chat
from streams.services.finalize import stream_finalize
from streams.services.interrupt import stream_interrupt_and_start
from streams.services.run import stream_run
from streams.services.send import message_send
from streams.services.start import (
    CannotAnswerAgain,
    StartedTurn,
    StreamConflict,
    TooManyTurns,
    stream_answer_again,
    stream_edit,
    stream_start,
    turn_attachments,
)
from streams.services.sweep import stream_interrupt_orphan, streams_sweep, streams_sweep_lost_workers

__all__ = [
    "CannotAnswerAgain",
    "NotInChat",
    "chat_show_branch",
    "message_send",
    "CancelOutcome",
    "StartedTurn",
    "StreamConflict",
    "TooManyTurns",
    "ToolCallNotWaiting",
    "stream_answer_again",
    "stream_cancel",
    "stream_edit",
    "stream_finalize",
    "stream_interrupt_and_start",
    "stream_interrupt_orphan",
    "stream_run",
    "stream_start",
    "turn_attachments",
    "streams_cancel_chat",
    "streams_sweep",
    "streams_sweep_lost_workers",
    "tool_call_decide",
]
