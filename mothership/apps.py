from django.apps import AppConfig


class MothershipConfig(AppConfig):
    """The layer on top: it composes chats, streams and warming, and hears what they announce."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "mothership"

    def ready(self):
        from chats.signals import chat_archived, chat_created, chat_renamed, chat_restored, chat_trashed
        from mothership import receivers
        from streams.signals import turn_claimed, turn_sealed, turn_started, turn_tool_changed
        from warming.signals import warming_changed

        chat_created.connect(receivers.on_chat_created, dispatch_uid="mothership.on_chat_created")
        chat_renamed.connect(receivers.on_chat_renamed, dispatch_uid="mothership.on_chat_renamed")
        chat_trashed.connect(receivers.on_chat_trashed, dispatch_uid="mothership.on_chat_trashed")
        chat_restored.connect(receivers.on_chat_restored, dispatch_uid="mothership.on_chat_restored")
        chat_archived.connect(receivers.on_chat_archived, dispatch_uid="mothership.on_chat_archived")
        turn_started.connect(receivers.on_turn_started, dispatch_uid="mothership.on_turn_started")
        turn_claimed.connect(receivers.on_turn_claimed, dispatch_uid="mothership.on_turn_claimed")
        turn_sealed.connect(receivers.on_turn_sealed, dispatch_uid="mothership.on_turn_sealed")
        turn_tool_changed.connect(receivers.on_turn_tool_changed, dispatch_uid="mothership.on_turn_tool_changed")
        warming_changed.connect(receivers.on_warming_changed, dispatch_uid="mothership.on_warming_changed")

        # Access withdrawn at once: Django's and DRF's own signals of the models involved.
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save
        from rest_framework.authtoken.models import Token

        from chats.models import Membership
        from mothership.models import ApiToken

        post_delete.connect(receivers.on_membership_deleted, sender=Membership, dispatch_uid="mothership.membership_deleted")
        post_save.connect(receivers.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="mothership.user_saved")
        user_logged_out.connect(receivers.on_logged_out, dispatch_uid="mothership.logged_out")
        post_delete.connect(receivers.on_token_deleted, sender=Token, dispatch_uid="mothership.token_deleted")
        post_delete.connect(receivers.on_api_token_deleted, sender=ApiToken, dispatch_uid="mothership.api_token_deleted")
