"""Each feature's part of the model-based test: its model of the shop, the commands it
generates, the hostile values it tries, and its checks of the read side."""
