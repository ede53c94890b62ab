from django.urls import path

from streams.consumers import MothershipConsumer

websocket_urlpatterns = [path("ws/", MothershipConsumer.as_asgi())]
