"""The perception service: one OS process per node, talking only over the bus (docs/architecture.md).

    capture -frames/<cam>-> encoder -embeddings/<cam>-> events -events/<cam>, decode/<cam>-> decoder
    -captions/<cam>->; world keeps the state and answers planners (now, history, search, ask).

`python -m perception.nodes NAME --config-json FILE` runs one node; `perception up` runs them all
(perception/nodes/launcher.py). Importing this package is cheap (no torch, no zmq).
"""

# node name -> module defining `Node` subclass `NODE`; the launcher starts them in this order
NODE_NAMES: dict[str, str] = {
    "world": "perception.nodes.world",
    "ros2": "perception.nodes.ros2_out",  # optional: captions and events out to a ROS 2 graph (pipeline.ros2)
    "decoder": "perception.nodes.decoder",
    "events": "perception.nodes.events",
    "encoder": "perception.nodes.encoder",
    "capture": "perception.nodes.capture",
}
