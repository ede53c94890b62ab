"""A turn: the model's rounds streamed into the journal, with the tool calls between them.

Each round, a producer thread reads the model and hands its text to the journal (which publishes
it in frames) and everything else (tool calls, usage, failures) to the run loop over one queue.
A round that asks for tools is followed by the calls, one after another, each a
``stream.tool_call`` and a ``stream.tool_result`` in the log, then by the next round, which is
sent the results (at most ``MOTHERSHIP_MAX_TOOL_ROUNDS`` rounds of calls). A stop reaches the
turn from the abort listener's thread (``on_abort``), the heartbeat, or the meter at the budget:
a model round is drained for ``_DRAIN_AFTER_STOP``; a tool call is abandoned at once, and its
server told (``mothership.infra.mcp``).
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time

import redis
from django.conf import settings
from django.utils import timezone

from mothership.infra import metrics
from mothership.infra.database import connection_release, retrying_database
from mothership.infra.signals import send_logged
from streams import abort, approvals, eventlog, events
from streams.models import Stream
from streams.providers import ProviderError, TextDelta, ToolCall, Usage, get_provider
from streams.providers.base import estimate_tokens, with_estimate
from streams.services.finalize import SEAL_RETRY_SECONDS, TURN_ENDED_BEFORE_TOOL
from streams.services.history import continued_text, conversation_history, prompt_sent
from streams.services.spending import TurnBudget
from streams.services.turn.journal import Journal, RedisLost
from streams.services.turn.meter import BUDGET, Meter
from streams.services.turn.tools import TurnTools
from streams.signals import turn_tool_changed

_END = object()
_ABORT = object()
_TOOL_DONE = object()
_DRAIN_AFTER_STOP = 0.2  # seconds: how long a stopped model's last words are waited for
_STOP_POLL = 0.05  # seconds: how often a tool call's wait looks at a stop set by the heartbeat
STOPPED_DURING_TOOL = "Stopped before the tool answered."
DENIED = "A person denied this call; it was not made."
_APPROVAL_POLL = 0.1  # seconds between looks at a waiting call's answer


class Turn:
    def __init__(self, stream: Stream, budget: TurnBudget | None = None):
        self.stream = stream
        self.chat_id = stream.chat_id
        self.usage = Usage()
        self._earlier_rounds = Usage()  # the usage of the rounds before this one
        self.history: list[dict] | None = None  # the prompt the model was sent, kept text included (set once generation starts)
        self.usage_settled = False  # estimated where missing, once (``estimate_usage``)
        self.failure: ProviderError | None = None  # what failed the model, if it failed
        self.stop = threading.Event()
        self.aborted: abort.AbortRequest | None = None
        self.abort_seen: abort.AbortRequest | None = None  # the stop this turn ends for (None: it ended on its own)
        self.abort_noticed_at = None
        self.cut_short = False
        self._items: queue.Queue = queue.Queue()
        self._round_calls: list[ToolCall] = []
        self.meter = Meter(budget, on_over_budget=self.over_budget)
        self.journal = Journal(stream=stream, meter=self.meter, stop=self.stop, wake=self._items.put)
        self.tools = TurnTools(stream.chat.tools, user_id=stream.started_by_id)

    @property
    def fenced(self) -> threading.Event:
        return self.journal.fenced

    def on_abort(self, request: abort.AbortRequest) -> None:
        """Called by the abort listener's thread: stop the model and wake the run loop now."""
        if self.aborted is not None:
            return
        self.abort_noticed_at = timezone.now()
        self.aborted = request
        self.stop.set()
        self._items.put(_ABORT)

    def over_budget(self) -> None:
        """The budget is spent: the turn stops as a user's Stop would, its text kept (``cancelled / budget``)."""
        self.on_abort(abort.AbortRequest(reason=BUDGET, requested_at=time.time()))

    def generate(self) -> None:
        """Run the model's rounds and their tool calls until the model ends, fails, or a stop lands.

        On a stop, what the model already sent (deltas, its usage) is drained for at most
        ``_DRAIN_AFTER_STOP`` seconds and kept; a model that does not return in that time is
        not waited for. What the model produced before an error is kept too.
        """
        history, prefix = retrying_database(
            lambda: (conversation_history(stream=self.stream), continued_text(stream=self.stream)),
            for_seconds=SEAL_RETRY_SECONDS,  # the heartbeat keeps the lock meanwhile
            what=f"the conversation of stream {self.stream.id}",
        )
        within_budget = retrying_database(
            lambda: self.meter.reserve_prompt(stream=self.stream, history=history),  # (counters may be seeded from the ledger)
            for_seconds=SEAL_RETRY_SECONDS,
            what=f"the budget of stream {self.stream.id}",
        )
        if not within_budget:
            self.over_budget()
            self.abort_seen = self.aborted
            return
        self.history = prompt_sent(history, prefix)
        # The model may take minutes: the database connection goes back to the pool meanwhile
        # (the seal takes one again), so connections never grow with the turns in flight.
        connection_release()
        provider = get_provider(self.stream.model_id or None)
        self.meter.delta_is_token = getattr(provider, "delta_is_token", False)
        ended = False
        try:
            ended = self._rounds(provider, history, prefix)
            # Decided here, once: a stop that lands after the model finished on its own changes nothing.
            self.abort_seen = self.aborted if (not ended or self.cut_short) else None
        finally:
            self.stop.set()
            try:
                self.journal.flush(model_ended=True)  # Redis is not waited for once the model has ended
            finally:
                self.journal.close()

    def _rounds(self, provider, messages: list[dict], prefix: str) -> bool:
        """The model's rounds; True when the last one ended on its own (or a tool call was stopped)."""
        for number in itertools.count():
            said = len(self.journal.received_text())
            calls, ended = self._model_round(provider, messages, prefix if number == 0 else "")
            if not ended or not calls or self.stop.is_set():
                return ended
            self.journal.flush()  # the round's text goes before its calls
            if number >= settings.MOTHERSHIP_MAX_TOOL_ROUNDS:
                limit = f"This turn reached its limit of {settings.MOTHERSHIP_MAX_TOOL_ROUNDS} rounds of tool calls."
                for call in calls:
                    self._refuse_call(call, limit)
                return True
            results = []
            for call in calls:
                results.append(self._call_tool(call))
                if self.cut_short:
                    return True
            sent, messages = (
                messages,
                [
                    *messages,
                    {
                        "role": "assistant",
                        "content": self.journal.received_text()[said:],
                        "tool_calls": [{"id": c.call_id, "name": c.name, "arguments": c.arguments} for c in calls],
                    },
                    *(
                        {
                            "role": "tool",
                            "tool_call_id": r["callId"],
                            "name": r["tool"],
                            "content": r["content"],
                            **({"is_error": True} if r["status"] != "ok" else {}),
                        }
                        for r in results
                    ),
                ],
            )
            # Each round's prompt is charged as it is sent; one that would cross the budget is not sent.
            if not self.meter.reserve_round(stream=self.stream, messages=messages, cached=sent):
                self.over_budget()
                self.cut_short = True  # ended by the budget, not by the model
                return True
        raise AssertionError("unreachable")

    def _model_round(self, provider, messages: list[dict], prefix: str) -> tuple[list[ToolCall], bool]:
        self._round_calls, self._earlier_rounds = [], self.usage
        producer = threading.Thread(target=self._produce, args=(provider, messages, prefix), daemon=True)
        producer.start()
        ended = self._consume()
        if ended:
            producer.join(timeout=5)
        return self._round_calls, ended

    def _produce(self, provider, messages, prefix: str = "") -> None:
        try:
            # Listed here, not before the thread: a stop while a tool server is slow to list lands at once.
            tools = self.tools.offered() if getattr(provider, "takes_tool_definitions", False) else ()
            for item in provider.stream(
                messages=messages, stop=self.stop, cache_key=str(self.chat_id), prefix=prefix, tools=tools
            ):
                if isinstance(item, TextDelta):
                    self.journal.add_text(item.text)
                else:
                    if isinstance(item, ToolCall):  # the model wrote it: output, charged as text is
                        written = json.dumps(item.arguments)
                        self.journal.charge_output(written, estimate_tokens(written))
                    self._items.put(item)
        except BaseException as exc:  # forwarded to the run loop, which decides the outcome
            self._items.put(exc)
        finally:
            # Was the model cut short by a stop? Written before _END, read after it.
            self.cut_short = self.stop.is_set()
            self._items.put(_END)

    def _consume(self) -> bool:
        """The run loop of a round. True when the model ended on its own, False when a stop's drain ran out."""
        drain_until: float | None = None
        while True:
            try:
                item = self._items.get(timeout=None if drain_until is None else max(0.0, drain_until - time.monotonic()))
            except queue.Empty:
                return False
            if item is _ABORT:
                drain_until = drain_until or time.monotonic() + _DRAIN_AFTER_STOP
            elif item is _END:
                return True
            elif isinstance(item, BaseException):
                if isinstance(item, ProviderError):
                    self.failure = item
                raise item
            elif isinstance(item, Usage):
                self.usage = self._earlier_rounds.plus(item)  # a round's last report is its whole usage
            elif isinstance(item, ToolCall):
                self._round_calls.append(item)

    # --- tool calls ------------------------------------------------------------------------

    def _call_tool(self, call: ToolCall) -> dict:
        record = self.tools.open(call)
        self.journal.emit(events.TOOL_CALL, callId=call.call_id, tool=call.name, arguments=call.arguments)
        started = time.monotonic()
        refusal = self.tools.refusal(call)
        decision = approvals.APPROVE
        if refusal is None and self.tools.needs_approval(call.name):
            decision = self._wait_for_approval(call)
        if refusal is not None:
            status, content = "error", refusal
        elif decision == approvals.DENY:
            status, content = "denied", DENIED
        elif decision != approvals.APPROVE:
            status, content = "cancelled", STOPPED_DURING_TOOL
        else:
            self._running(call.name)
            try:
                future = self.tools.start(call)
                future.add_done_callback(lambda _future: self._items.put(_TOOL_DONE))
                status, content = self._wait_for_tool(future)
            finally:
                self._running(None)
        return self._close_call(record, status, content, started)

    def _running(self, tool: str | None) -> None:
        """Every tile says which tool the turn runs (and since when), until it answers."""
        try:
            if tool is None:
                approvals.tool_done(stream_id=self.stream.id)
            else:
                ttl_ms = int(settings.MOTHERSHIP_STREAM_LOCK_TTL * 1000)
                approvals.tool_running(stream_id=self.stream.id, tool=tool, ttl_ms=ttl_ms)
        except redis.RedisError:  # the mark expires with the lock's TTL; the tile is only less precise
            return
        self._tool_changed()

    def _wait_for_approval(self, call: ToolCall) -> str:
        """A person's answer (``approve`` / ``deny``), or ``cancelled`` when a stop lands first.

        Meanwhile every tab shows the call (``stream.tool_approval``) and every tile "needs you";
        the turn's waiting mark lives as long as its lock, renewed here.
        """
        ttl_ms = int(settings.MOTHERSHIP_STREAM_LOCK_TTL * 1000)
        self.journal.emit(events.TOOL_APPROVAL, callId=call.call_id, tool=call.name, arguments=call.arguments)
        approvals.approval_open(stream_id=self.stream.id, call_id=call.call_id, ttl_ms=ttl_ms)
        self._tool_changed()
        renewed = time.monotonic()
        try:
            while True:
                if self.aborted is not None:
                    self.cut_short = True
                    return "cancelled"
                try:
                    item = self._items.get(timeout=_APPROVAL_POLL)
                except queue.Empty:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                if self.fenced.is_set() or self.journal.redis_lost:
                    lost = eventlog.Fenced if self.fenced.is_set() else RedisLost
                    raise lost(str(self.stream.id))
                try:
                    decision = approvals.approval_decision(stream_id=self.stream.id, call_id=call.call_id)
                    if time.monotonic() - renewed > settings.MOTHERSHIP_STREAM_HEARTBEAT:
                        approvals.approval_renew(stream_id=self.stream.id, call_id=call.call_id, ttl_ms=ttl_ms)
                        renewed = time.monotonic()
                except redis.RedisError:  # away for a moment: the heartbeat decides whether the turn lives
                    continue
                if decision in (approvals.APPROVE, approvals.DENY):
                    return decision
        finally:
            try:
                approvals.approval_close(stream_id=self.stream.id, call_id=call.call_id)
            except redis.RedisError:  # the mark expires with the lock's TTL
                pass
            self._tool_changed()

    def _tool_changed(self) -> None:
        send_logged(
            turn_tool_changed,
            sender=Stream,
            chat_id=self.chat_id,
            workspace_id=self.stream.chat.workspace_id,
            stream_id=self.stream.id,
        )

    def _refuse_call(self, call: ToolCall, why: str) -> dict:
        record = self.tools.open(call)
        self.journal.emit(events.TOOL_CALL, callId=call.call_id, tool=call.name, arguments=call.arguments)
        return self._close_call(record, "error", why, time.monotonic())

    def _close_call(self, record: dict, status: str, content: str, started: float) -> dict:
        seconds = time.monotonic() - started
        record.update(status=status, content=content, durationMs=round(seconds * 1000))
        metrics.observe(metrics.TOOL_CALLS, seconds, label=status)
        self.journal.emit(
            events.TOOL_RESULT, callId=record["callId"], status=status, content=content, durationMs=record["durationMs"]
        )
        return record

    def _wait_for_tool(self, future) -> tuple[str, str]:
        """The call's (status, content); a stop abandons it at once (its server is told)."""
        renewed = time.monotonic()
        while True:
            if time.monotonic() - renewed > settings.MOTHERSHIP_STREAM_HEARTBEAT:
                renewed = time.monotonic()
                try:
                    approvals.tool_running_renew(stream_id=self.stream.id, ttl_ms=int(settings.MOTHERSHIP_STREAM_LOCK_TTL * 1000))
                except redis.RedisError:
                    pass
            if self.aborted is not None:
                future.cancel()
                self.cut_short = True
                return "cancelled", STOPPED_DURING_TOOL
            try:
                item = self._items.get(timeout=_STOP_POLL)
            except queue.Empty:
                if self.fenced.is_set() or self.journal.redis_lost:  # the heartbeat: this turn may write no more
                    future.cancel()
                    lost = eventlog.Fenced if self.fenced.is_set() else RedisLost
                    raise lost(str(self.stream.id)) from None
                continue
            if item is _TOOL_DONE and future.done():
                if future.cancelled():
                    return "cancelled", STOPPED_DURING_TOOL
                outcome = future.result()
                return outcome.status, outcome.content
            if isinstance(item, BaseException):  # the journal could not write (frames of the last round)
                future.cancel()
                raise item
            # _ABORT is seen at the top of the loop; a late _TOOL_DONE of an earlier call is dropped.

    # --- the seal --------------------------------------------------------------------------

    def estimate_usage(self, text: str, *, finished: bool) -> None:
        """What the model was billed for, estimated where it reported nothing (a stop before its
        last chunk); once per turn, so a finished turn's reported figures are never second-guessed.
        A request refused before the model wrote anything was billed nothing: no estimate."""
        if not self.usage_settled:
            if not self._refused_outright(text):
                self.usage = with_estimate(self.usage, prompt=self.history, text=text, finished=finished)
            self.usage_settled = True

    def _refused_outright(self, text: str) -> bool:
        """The provider answered an error (or was never reached) before this turn received anything."""
        unbilled = self.failure is not None and not self.failure.billed
        return unbilled and not text and self.usage == Usage() and not self.tools.records

    def seal_text(self) -> tuple[str, int]:
        """The text the seal saves (everything received) and the seq of its last event before the
        terminal one. Text and usage that never reached the log are owed to it: the journal's
        ``write_back`` appends them, with whatever a restarted Redis lost, before the terminal event."""
        text = self.journal.received_text()
        self.estimate_usage(text, finished=False)  # a turn that did not end on its own (or already settled)
        if self.aborted is not None:
            self.tools.close_open("cancelled", STOPPED_DURING_TOOL)
        else:
            self.tools.close_open("interrupted", TURN_ENDED_BEFORE_TOOL)
        return text, self.journal.owe(self.usage)
