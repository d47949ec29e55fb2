"""The viewers' defaults, in a module that imports nothing, so `perception --help` stays fast."""

FOXGLOVE_HOST = "127.0.0.1"
FOXGLOVE_PORT = 8765  # the Foxglove app's default connection
FOXGLOVE_BACKLOG = 64  # messages queued per WebSocket client before its oldest are dropped (~4 s at 15 fps)
FOXGLOVE_MAX_CLIENTS = 16  # WebSocket clients served at once; one more is refused (HTTP 503) with the reason
MAX_FPS = 10.0  # frames per second per camera sent to a viewer
RERUN_WEB_PORT = 9090  # Rerun's own defaults
RERUN_GRPC_PORT = 9876
HISTORY = 120  # windows in the Rerun heat-map (~32 s at the default 0.27 s stride)
