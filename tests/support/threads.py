"""A thread that runs app code the way a worker thread does: its database connection is given
back when it ends (a pooled connection a thread keeps is lost to the pool for good)."""

from __future__ import annotations

import threading

from django.db import connection


def app_thread(target) -> threading.Thread:
    def run():
        try:
            target()
        finally:
            connection.close()

    return threading.Thread(target=run)
