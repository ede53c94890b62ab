"""What ``warming`` tells the apps above it (connected in their ``AppConfig.ready()``)."""

from django.dispatch import Signal

# Sent after commit when a schedule's stored state changed (a warm, a toggle, a stop rule).
# Arguments: chat_id, workspace_id, fields (the surface's fields, as pushed to its tabs).
warming_changed = Signal()
