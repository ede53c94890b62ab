"""Django's ``createsuperuser``, which checks the password against ``AUTH_PASSWORD_VALIDATORS`` in
its ``--noinput`` form too (``DJANGO_SUPERUSER_PASSWORD``): Django's own checks it only when it asks
for one at a prompt."""

from __future__ import annotations

import os

from django.contrib.auth.management.commands import createsuperuser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


class Command(createsuperuser.Command):
    def handle(self, *args, **options):
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not options["interactive"] and password is not None:
            # The fields the similarity check compares the password with, as the command will set them.
            fields = {}
            for name in (self.UserModel.USERNAME_FIELD, *self.UserModel.REQUIRED_FIELDS):
                value = options.get(name) or os.environ.get(f"DJANGO_SUPERUSER_{name.upper()}")
                if isinstance(value, str):
                    fields[name] = value
            try:
                validate_password(password, self.UserModel(**fields))
            except ValidationError as exc:
                raise CommandError("DJANGO_SUPERUSER_PASSWORD was refused: " + " ".join(exc.messages)) from None
        super().handle(*args, **options)
