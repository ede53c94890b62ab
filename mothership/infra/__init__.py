"""Leaf infrastructure every app may use: the Redis client, channel groups, API and socket plumbing.

Nothing in this package imports an app (``chats``, ``streams``, ``warming`` or the rest of
``mothership``); the import contracts in ``pyproject.toml`` keep it so.
"""
