"""The settings pages' and the workspace page's forms: they check what a person typed, and say
what is wrong beside the field (the page answers 400); the views then call one service each."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordChangeForm

from chats.models import Membership
from mothership.models import UserPreferences
from streams.providers import default_model, models


class Styled:
    """Each control gets the design system's class: ``select`` for a select, ``input`` for the rest."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.RadioSelect):
                continue
            css = "select" if isinstance(widget, forms.Select) else "input"
            widget.attrs["class"] = " ".join(filter(None, [widget.attrs.get("class"), css]))


class PasswordForm(Styled, PasswordChangeForm):
    pass


class ProfileForm(Styled, forms.ModelForm):
    class Meta:
        model = get_user_model()
        fields = ["first_name", "last_name", "email"]
        labels = {"first_name": "First name", "last_name": "Last name", "email": "E-mail"}

    def clean_email(self):
        email = self.cleaned_data["email"].strip()
        taken = get_user_model().objects.filter(email__iexact=email).exclude(pk=self.instance.pk)
        if email and taken.exists():
            # Owners add people by e-mail: two accounts with one address would make that ambiguous.
            raise forms.ValidationError("Another account uses that e-mail.")
        return email


class TokenCreateForm(Styled, forms.Form):
    name = forms.CharField(
        max_length=100, strip=True, help_text="What uses it, so that you know which one to revoke (for example “laptop CLI”)."
    )


class AppearanceForm(forms.Form):
    theme = forms.ChoiceField(choices=UserPreferences.Theme.choices, widget=forms.RadioSelect, label="Theme")


def _model_choices() -> list[tuple[str, str]]:
    return [("", f"The deployment's default ({default_model().label})")] + [(m.id, m.label) for m in models()]


class DefaultModelForm(Styled, forms.Form):
    default_model = forms.ChoiceField(
        choices=_model_choices,
        required=False,
        label="Model of new chats",
        help_text="A new chat starts on it; each chat can still switch. If it is taken off this server, new chats use the default.",
    )


class MemberAddForm(Styled, forms.Form):
    user = forms.CharField(max_length=254, strip=True, label="Username or e-mail")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER, label="Role")


class MemberRoleForm(Styled, forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices, label="Role")
