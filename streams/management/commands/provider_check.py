"""Ask each configured model for one token: are its key, its name and its endpoint right?"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from streams.providers import ProviderError, get_provider, model_get, models


class Command(BaseCommand):
    help = (
        "Send a 1-token request to every configured model (LLM_MODELS, or LLM_PROVIDER / LLM_MODEL) and print one "
        "line per model: ok with its usage, or the provider's reason. Exits 1 when any model fails."
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
        if options["json"]:
            self.stdout.write(json.dumps(rows if not options["model"] else rows[0]))
        else:
            width = max(len(row["id"]) for row in rows)
            for row in rows:
                where = f"{row['provider']} / {row['model']} at {row['endpoint']}"
                outcome = f"ok, usage {row['usage']}" if row["ok"] else f"FAILED: {row['reason']}"
                self.stdout.write(f"{row['id']:<{width}}  {where}: {outcome}")
        if not all(row["ok"] for row in rows):
            raise SystemExit(1)

    def _check(self, spec) -> dict:
        row = {
            "id": spec.id,
            "provider": spec.provider,
            "model": spec.model,
            "endpoint": spec.base_url or ("this machine" if spec.provider == "local" else "default endpoint"),
        }
        try:
            usage = get_provider(spec.id).warm(messages=[{"role": "user", "content": "Reply with one word."}])
        except ProviderError as exc:
            return {**row, "ok": False, "reason": exc.reason}
        return {**row, "ok": True, "usage": usage.as_dict()}
