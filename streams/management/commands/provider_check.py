"""Ask the configured model for one token: is the key, the model and the endpoint right?"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from streams.providers import ProviderError, get_provider


class Command(BaseCommand):
    help = "Send a 1-token request to the configured model (LLM_PROVIDER, LLM_MODEL) and print its usage. Exits 1 on a provider error."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args, **options):
        provider = get_provider()
        try:
            usage = provider.warm(messages=[{"role": "user", "content": "Reply with one word."}])
        except ProviderError as exc:
            if options["json"]:
                self.stdout.write(
                    json.dumps({"ok": False, "provider": provider.name, "model": provider.model, "reason": exc.reason})
                )
                raise SystemExit(1) from exc
            raise CommandError(f"{provider.name} / {provider.model}: {exc.reason}") from exc
        if options["json"]:
            self.stdout.write(
                json.dumps({"ok": True, "provider": provider.name, "model": provider.model, "usage": usage.as_dict()})
            )
        else:
            base_url = {"anthropic": settings.ANTHROPIC_BASE_URL, "openai": settings.OPENAI_BASE_URL}.get(
                provider.name
            ) or "default endpoint"
            self.stdout.write(f"ok: {provider.name} / {provider.model} at {base_url} answered; usage {usage.as_dict()}")
