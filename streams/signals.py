"""What ``streams`` tells the apps above it (connected in their ``AppConfig.ready()``).

All are sent after commit, with ``send_robust``: a receiver that fails is logged and never
undoes or delays a turn.
"""

from django.dispatch import Signal

# A turn was created (its stream is queued and its lock taken). Arguments: chat_id, workspace_id, stream_id.
turn_started = Signal()

# A worker took a queued turn (it leaves the queue and starts streaming).
# Arguments: chat_id, workspace_id, stream_id.
turn_claimed = Signal()

# A turn was sealed once and for all (completed, cancelled, interrupted or failed).
# Arguments: chat_id, stream_id, status, sealed_at.
turn_sealed = Signal()

# A turn's tool call began or stopped waiting for a person (the tile says "needs you" meanwhile),
# or began or stopped running (the tile names the tool).
# Arguments: chat_id, workspace_id, stream_id.
turn_tool_changed = Signal()
