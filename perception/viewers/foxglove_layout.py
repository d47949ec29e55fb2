"""The Foxglove layout shipped in docs/foxglove-layout.json, built with the SDK's own layout types.

    python -m perception.viewers.foxglove_layout docs/foxglove-layout.json            # one camera, cam0
    python -m perception.viewers.foxglove_layout my-layout.json --cameras head,wrist   # one tab per camera

Per camera: the image, the captions and the events (Log panels) on the left; on the right the segments
over time (State Transitions: the online segments' top labels, the captions, the ground truth), each
window's watch-phrase scores (Plot, one line per phrase) and every node's CPU (Plot, from stats/<node>).
Import it in the Foxglove app with "Layouts > Import from file" (topics: perception/viewers/foxglove_sink.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NODES = ("capture", "encoder", "events", "decoder", "world")


def camera_layout(cam: str) -> Any:
    import foxglove.layouts as fl

    def series(value: str, label: str) -> Any:
        return fl.StateTransitionsSeries(value=value, label=label, enabled=True, timestamp_method="receiveTime")

    left = fl.SplitContainer(
        direction="column",
        items=[
            fl.SplitItem(
                proportion=3,
                content=fl.ImagePanel(
                    config=fl.ImageConfig(image_mode=fl.ImageModeConfig(image_topic=f"/frames/{cam}"))
                ),
            ),
            fl.SplitItem(
                proportion=2,
                content=fl.LogPanel(title=f"captions {cam}", config=fl.LogConfig(topic_to_render=f"/captions/{cam}")),
            ),
            fl.SplitItem(
                proportion=2,
                content=fl.LogPanel(title=f"events {cam}", config=fl.LogConfig(topic_to_render=f"/events/{cam}")),
            ),
        ],
    )
    right = fl.SplitContainer(
        direction="column",
        items=[
            fl.SplitItem(
                proportion=2,
                content=fl.StateTransitionsPanel(
                    title=f"segments {cam}",
                    config=fl.StateTransitionsConfig(
                        paths=[
                            series(f"/segments/{cam}.label", "segment (top label)"),
                            series(f"/captions/{cam}.message", "caption"),
                            series(f"/truth/{cam}.message", "ground truth"),
                        ],
                        show_legend=True,
                    ),
                ),
            ),
            fl.SplitItem(
                proportion=2,
                content=fl.PlotPanel(
                    title=f"watch scores {cam} (cosine)",
                    config=fl.PlotConfig(
                        paths=[
                            fl.PlotSeries(
                                value=f"/watch_scores/{cam}.watches",
                                dynamic_label_field="phrase",
                                dynamic_value_field="score",
                                enabled=True,
                                timestamp_method="receiveTime",
                            )
                        ],
                        min_y_value=-0.2,
                        max_y_value=1.0,
                        show_legend=True,
                    ),
                ),
            ),
            fl.SplitItem(
                proportion=1,
                content=fl.PlotPanel(
                    title="CPU % per node",
                    config=fl.PlotConfig(
                        paths=[
                            fl.PlotSeries(
                                value=f"/stats/{node}.counters.cpu_pct",
                                label=node,
                                enabled=True,
                                timestamp_method="receiveTime",
                            )
                            for node in NODES
                        ],
                        show_legend=True,
                    ),
                ),
            ),
        ],
    )
    return fl.SplitContainer(
        direction="row", items=[fl.SplitItem(proportion=2, content=left), fl.SplitItem(proportion=3, content=right)]
    )


def layout(cameras: list[str]) -> Any:
    import foxglove.layouts as fl

    if len(cameras) == 1:
        return fl.Layout(content=camera_layout(cameras[0]))
    tabs = [fl.TabItem(title=cam, content=camera_layout(cam)) for cam in cameras]
    return fl.Layout(content=fl.TabContainer(tabs=tabs))


def layout_json(cameras: list[str]) -> str:
    """The layout as the file the Foxglove app imports (indented, stable key order)."""
    return json.dumps(json.loads(layout(cameras).to_json()), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perception.viewers.foxglove_layout", description=__doc__)
    p.add_argument("out", help="the layout file to write (JSON)")
    p.add_argument("--cameras", default="cam0", help="comma-separated camera names (default cam0)")
    args = p.parse_args(argv)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    if not cameras:
        print("--cameras names no camera", file=sys.stderr)
        return 2
    Path(args.out).write_text(layout_json(cameras))
    print(f"wrote {args.out} ({', '.join(cameras)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
