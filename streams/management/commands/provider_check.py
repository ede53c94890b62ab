"""Ask each configured model for one token, then for a streamed reply: are its key, its name and
its endpoint right, and does it stream (every turn is a streaming request)?"""

from __future__ import annotations

import json
import threading

from django.core.management.base import BaseCommand, CommandError

from mothership.infra.secrets import mask
from streams.providers import ProviderError, TextDelta, ToolCall, get_provider, model_get, models

CHECK_PROMPT = [{"role": "user", "content": "Reply with one word."}]


class Command(BaseCommand):
    help = (
        "Send a 1-token request, then a streaming one (hung up at its first words), to every configured model "
        "(LLM_MODELS, or LLM_PROVIDER / LLM_MODEL) and print one line per model: ok with the 1-token request's usage, "
        "or the provider's reason. Exits 1 when any model fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="Check only the model with this id.")
        parser.add_argument("--json", action="store_true", help="Print the outcomes as a JSON list.")

    def handle(self, *args, **options):
        if options["model"]:
            spec = model_get(options["model"])
            if spec is None:
                raise CommandError(f"no model {options['model']!r}; configured: {', '.join(m.id for m in models())}")
            specs = [spec]
        else:
            specs = models()
        rows = [self._check(spec) for spec in specs]
        # An endpoint may carry a key in its query (?key=…), a reason the server's words: both masked.
        if options["json"]:
            self.stdout.write(mask(json.dumps(rows if not options["model"] else rows[0])))
        else:
            width = max(len(row["id"]) for row in rows)
            for row in rows:
                where = f"{row['provider']} / {row['model']} at {row['endpoint']}"
                outcome = f"ok, usage {row['usage']}" if row["ok"] else f"FAILED: {row['reason']}"
                self.stdout.write(mask(f"{row['id']:<{width}}  {where}: {outcome}"))
        if not all(row["ok"] for row in rows):
            raise SystemExit(1)

    def _check(self, spec) -> dict:
        row = {
            "id": spec.id,
            "provider": spec.provider,
            "model": spec.model,
            "endpoint": spec.base_url or ("this machine" if spec.provider == "local" else "default endpoint"),
        }
        provider = get_provider(spec.id)
        try:
            usage = provider.warm(messages=CHECK_PROMPT)
        except ProviderError as exc:
            return {**row, "ok": False, "reason": exc.reason}
        try:
            _stream_a_reply(provider)
        except ProviderError as exc:
            return {**row, "ok": False, "reason": f"a streaming request: {exc.reason}"}
        return {**row, "ok": True, "usage": usage.as_dict()}


def _stream_a_reply(provider) -> None:
    """A turn's request (``stream: true``), hung up at its first words: a server that answers it
    with one JSON body, or fails it, raises ``ProviderError`` as every turn on it would."""
    stop = threading.Event()
    for item in provider.stream(messages=CHECK_PROMPT, stop=stop):
        if isinstance(item, TextDelta | ToolCall):
            stop.set()  # it streams: the rest of the reply is not needed (nor paid for)
