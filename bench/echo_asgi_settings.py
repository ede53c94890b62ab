"""Settings of the bare echo in ``bench/echo_asgi.py``: Channels and its Redis pub/sub layer only."""

import os

SECRET_KEY = "bench-echo"
INSTALLED_APPS = ["channels"]
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}], "prefix": "mothership-bench-echo"},
    }
}
