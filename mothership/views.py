"""The dashboard of task tiles, and the health check."""

from __future__ import annotations

import redis
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chats import selectors
from mothership.redis_client import get_redis


@login_required
@require_GET
def home(request):
    workspaces = list(selectors.workspace_list(user=request.user))
    workspace = None
    if request.GET.get("workspace"):
        workspace = selectors.workspace_get(user=request.user, workspace_id=request.GET["workspace"])
    elif workspaces:
        workspace = workspaces[0]
    tiles = selectors.chat_list(user=request.user, workspace=workspace) if workspace else []
    return render(request, "mothership/home.html", {"workspaces": workspaces, "workspace": workspace, "tiles": tiles})


@login_required
@require_GET
def chat_page(request, chat_id):
    detail = selectors.chat_detail(user=request.user, chat_id=chat_id)
    return render(request, "mothership/chat.html", {"detail": detail, "chat": detail.view.chat})


@require_GET
def healthz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # a health check reports, it never raises
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)


__all__ = ["home", "chat_page", "healthz"]
