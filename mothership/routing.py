from django.urls import path

from mothership.consumers import MothershipConsumer

websocket_urlpatterns = [path("ws/", MothershipConsumer.as_asgi())]
