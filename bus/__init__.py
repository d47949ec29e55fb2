"""ZeroMQ transport: envelope and codec, pub/sub, proxy, request/reply, record/replay.

Knows nothing of models or video.
"""
