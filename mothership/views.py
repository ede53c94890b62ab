"""The dashboard of task tiles, the chat page, the public share page, and the health check."""

from __future__ import annotations

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.exceptions import Throttled

from chats import selectors as chat_selectors
from chats import services as chat_services
from chats.api.serializers import share_url
from chats.models import SYSTEM_PROMPT_MAX
from mothership import selectors, services
from mothership.celery import app as celery_app
from mothership.celery import background_queue
from mothership.infra import cursors
from mothership.infra import metrics as infra_metrics
from mothership.infra.markdown import render_markdown
from mothership.infra.readiness import readiness_check
from mothership.infra.redis import get_redis
from mothership.infra.throttles import user_rate_check
from mothership.suggestions import suggestion_sets
from spend.selectors import budget_status
from streams.api.serializers import messages_output
from streams.providers import model_for, models


@login_required
@require_GET
def home(request):
    workspaces = list(chat_selectors.workspace_list(user=request.user))
    workspace = None
    if request.GET.get("workspace"):
        workspace = chat_selectors.workspace_get(user=request.user, workspace_id=request.GET["workspace"])
    elif workspaces:
        workspace = workspaces[0]
    tiles, older = [], None
    archived = request.GET.get("archived") == "1"  # the Archived filter: only they
    if workspace:
        try:
            tiles, older = selectors.chat_list(
                user=request.user, workspace=workspace, cursor=request.GET.get("cursor"), archived=archived
            )
        except cursors.BadCursor:
            return HttpResponseBadRequest("That page of conversations does not exist; start again from the dashboard.")
    # While a tile is yellow, the page re-reads the (reconciled) list this often, so a tile whose
    # worker died clears within the lock TTL plus this, even before the sweeper seals the stream.
    liveness_poll_ms = int(min(settings.MOTHERSHIP_STREAM_LOCK_TTL / 2, 10) * 1000)
    context = {
        "workspaces": workspaces,
        "workspace": workspace,
        "tiles": tiles,
        "first_page": not request.GET.get("cursor"),
        "archived": archived,
        "older": older,  # the next page's cursor, None on the last
        "liveness_poll_ms": liveness_poll_ms,
        # Spend against the budgets (this month, the reader's today); owners set them here.
        "spend": budget_status(workspace_id=workspace.pk, user_id=request.user.pk) if workspace else None,
        "can_set_budget": bool(workspace) and chat_selectors.workspace_is_owner(user=request.user, workspace_id=workspace.pk),
    }
    return render(request, "mothership/home.html", context)


@login_required
@require_POST
def chat_new(request):
    """The dashboard's New chat form: create it in the workspace and open it."""
    workspace = chat_selectors.workspace_get(user=request.user, workspace_id=request.POST.get("workspace"))
    try:
        user_rate_check(scope="chat_create", user=request.user)  # the API's rate (MOTHERSHIP_CHAT_CREATE_RATE)
    except Throttled as exc:
        return HttpResponse(
            str(exc.detail), status=429, headers={"Retry-After": str(exc.wait)}, content_type="text/plain; charset=utf-8"
        )
    title = (request.POST.get("title") or "").strip()[:200]  # none: the first message names it
    # A chat is kept once it has a first message: the ones this member left empty go.
    chat_services.chats_discard_empty(user=request.user, workspace_id=workspace.pk)
    chat = chat_services.chat_create(
        workspace=workspace, title=title, created_by=request.user, model_id=selectors.user_default_model(user=request.user)
    )
    return redirect("chat", chat_id=chat.id)


CHAT_LIST_SIDE = 50  # conversations in the chat page's list (the dashboard pages through the rest)


@login_required
@require_GET
def chat_page(request, chat_id):
    if request.GET.get("message"):  # opened at a message (a search result): its branch is shown
        services.chat_open_at(
            chat=chat_selectors.chat_get_for_member(user=request.user, chat_id=chat_id), message_id=request.GET["message"]
        )
    detail = selectors.chat_detail(user=request.user, chat_id=chat_id)
    chat_services.chat_mark_seen(user=request.user, chat=detail.view.chat)
    # The workspace's latest conversations beside this one (which is listed even when older).
    conversations, _ = selectors.chat_list(user=request.user, workspace=detail.view.chat.workspace, limit=CHAT_LIST_SIDE)
    if all(view.chat.pk != detail.view.chat.pk for view in conversations):
        conversations = [detail.view, *conversations]
    chat = detail.view.chat
    can_manage = chat_selectors.user_may_manage(user=request.user, chat=chat)
    tool_servers = selectors.chat_tool_choices(chat.tools)
    rows = messages_output(detail.messages)  # each message's JSON, its files among it (one query for them all)
    context = {
        "conversations": conversations,
        "detail": detail,
        "chat": detail.view.chat,
        # Close and the warming controls only for those who may use them (the server refuses others).
        "can_manage": can_manage,
        # The model picker, when the deployment offers more than one (LLM_MODELS).
        "models": [m.public() for m in models()],
        "chat_model": model_for(detail.view.chat.model_id).id,
        "can_continue": model_for(detail.view.chat.model_id).prefill,
        # What the page shows under each reply (the JSON of GET …/messages/<id>), and the models' names.
        "figures": {row["id"]: row for row in rows if row["role"] == "assistant"},
        # Each message with its files (the JSON of the upload's answer), drawn under its text.
        "transcript": [(message, row["attachments"]) for message, row in zip(detail.messages, rows, strict=True)],
        # The composer refuses, before uploading, what the server would refuse (413, and a send's 400).
        "attachment_max_bytes": settings.MOTHERSHIP_ATTACHMENT_MAX_BYTES,
        "attachments_per_message": settings.MOTHERSHIP_ATTACHMENTS_PER_MESSAGE,
        "model_labels": {m.id: m.label for m in models()},
        # Continue: the kept text a live stream's deltas go on from.
        "active_prefix": next(
            (m.content for m in detail.messages if detail.stream and str(m.id) == detail.stream["assistant_message_id"]), ""
        ),
        "system_prompt_max": SYSTEM_PROMPT_MAX,
        # The tools picker: the servers of MCP_SERVERS, each with the tools a worker listed.
        "tool_servers": tool_servers,
        # An empty chat: what to send first, for each kind of model the picker may switch to.
        "suggestion_sets": []
        if detail.messages
        else suggestion_sets(current=model_for(chat.model_id), offered=models(), tool_servers=tool_servers, tools=chat.tools),
        # A live turn's calls so far (from its log), drawn as cards until its seal saves them.
        "active_tool_calls": (detail.stream or {}).get("tool_calls") or [],
        # Its active share links (the Share section), each with whether this member may revoke it.
        "shares": [
            {
                "share": share,
                "url": share_url(request, share.token),
                "can_revoke": chat_selectors.user_may_revoke_share(user=request.user, share=share, chat=chat, manages=can_manage),
            }
            for share in chat_selectors.chat_shares_active(chat=chat)
        ],
        "warming_min": settings.MOTHERSHIP_WARMING_MIN_INTERVAL,
        "warming_max": settings.MOTHERSHIP_WARMING_MAX_INTERVAL,
    }
    return render(request, "mothership/chat.html", context)


# A share page is public: never indexed, never cached by a shared cache (a revoked link must stop
# answering at once), and a link followed from it tells the other site nothing.
SHARE_HEADERS = {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}


@never_cache
@require_GET
def share_page(request, token):
    """``/s/<token>``: a share link's read-only snapshot, no login needed; 404 once revoked, or while
    its chat is in the trash. It shows the title, the messages (replies as sanitized Markdown) and
    the time it was made: no id of the chat, its messages, users or workspace."""
    try:
        share = chat_selectors.share_get_public(token=token)
    except Http404:
        return _share_response(render(request, "mothership/share_missing.html", status=404))
    messages = [
        {
            "role": row.get("role", ""),
            "status": row.get("status", ""),
            "html": render_markdown(row.get("content", "")) if row.get("role") == "assistant" else None,
            "text": row.get("content", ""),
            "tool_calls": row.get("tool_calls") or [],
            "attachments": row.get("attachments") or [],
        }
        for row in share.messages
    ]
    return _share_response(render(request, "mothership/share.html", {"share": share, "messages": messages}))


def _share_response(response: HttpResponse) -> HttpResponse:
    for name, value in SHARE_HEADERS.items():
        response.headers[name] = value
    return response


@require_GET
def favicon(request):
    """No icon (the pages name none); a browser that asks anyway (the admin's pages) gets an empty answer, not a 404."""
    return HttpResponse(status=204, headers={"Cache-Control": "public, max-age=86400"})


@require_GET
def metrics(request):
    """Prometheus text for the whole deployment (``mothership.infra.metrics``; docs/operations.md)."""
    if not settings.MOTHERSHIP_METRICS:
        raise Http404("Metrics are off (MOTHERSHIP_METRICS=0).")
    refusal = infra_metrics.scrape_refusal(request)
    if refusal is not None:
        status, sentence = refusal
        headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if status == 401 else {}
        return HttpResponse(sentence, status=status, content_type="text/plain; charset=utf-8", headers=headers)
    try:
        body = infra_metrics.exposition(selectors.metrics_gauges())
    except redis.RedisError as exc:  # the totals live in Redis: no partial answer that reads as zeros
        return HttpResponse(
            f"Redis is unavailable ({exc.__class__.__name__}); the metrics live there.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


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


@never_cache
@require_GET
def readyz(request):
    """Ready to take turns: the database, Redis, a live turn and background worker, beat ticking
    (mothership.infra.readiness); 503 names what is not. No sign-in, no secrets in the reasons."""
    turn_queue = celery_app.conf.task_default_queue
    ready, checks = readiness_check(turn_queue=turn_queue, background_queue=background_queue(turn_queue))
    return JsonResponse(checks, status=200 if ready else 503)


__all__ = ["home", "chat_new", "chat_page", "share_page", "healthz", "readyz"]


def not_found(request, exception=None):
    """``handler404``: an unknown API URL answers JSON like the rest of the API; pages get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "No such API URL."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
