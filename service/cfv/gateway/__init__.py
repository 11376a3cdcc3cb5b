"""The HTTP gateway (aiohttp): authenticates, checks shapes, publishes commands, answers."""
