"""Viewers: a session, live or recorded, in Foxglove and in Rerun (docs/viewers.md).

- `perception foxglove`: the live bus as a Foxglove WebSocket server (foxglove_bridge.py);
- `perception info IN.mcap --export foxglove OUT.mcap`: a recording as Foxglove's schemas (foxglove_export.py);
- `perception view [SESSION.mcap]`: a live pipeline or a recording in Rerun (rerun_view.py).

One path for all three: `feed.Feed` takes the pipeline's messages (from the bus: live.py; from an MCAP
file: recording.py), gates and compresses frames (images.py), scores each window's embedding against label
texts and watch phrases (texts.py) and hands everything to a sink (foxglove_sink.py, rerun_sink.py).
Viewers are bus clients beside the skills; no node imports this package.
"""
