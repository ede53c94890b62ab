from django.apps import AppConfig


class WarmingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "warming"

    def ready(self):
        from streams.signals import turn_sealed
        from warming import receivers

        turn_sealed.connect(receivers.on_turn_sealed, dispatch_uid="warming.on_turn_sealed")
