from django.apps import AppConfig


class WarmingConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'warming'
