"""`perception graph [--mermaid | --png OUT]`: the configured node graph with message types.

Read from the nodes' declared inputs and outputs (no process starts, no model loads); exits 1 when an
input is wired to nothing (see perception/nodes/graph.py).
"""

from __future__ import annotations

import argparse
import sys

HELP = "print the node graph with message types"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mermaid", action="store_true", help="a Mermaid flowchart instead of the text table")
    p.add_argument("--png", default=None, help="also draw the graph to this PNG")


def run(args: argparse.Namespace) -> int:
    from perception.config import ConfigError, load_config
    from perception.nodes.graph import Graph

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"perception graph: {exc}", file=sys.stderr)
        return 2
    graph = Graph.of(config.pipeline.nodes, config)
    external = config.pipeline.external_inputs
    print(graph.mermaid() if args.mermaid else graph.format(external))
    if args.png:
        draw(graph, args.png, title=f"perception graph ({config.name})")
        print(f"wrote {args.png}")
    return 1 if graph.unwired(external) else 0


def edge_label(ax, x: float, y: float, edge, va: str, sep: str = " ", size: float = 7.5, color: str = "#444") -> None:
    """An edge's topic and message type, centred at (x, y)."""
    ax.text(x, y, f"{edge.output.topic}{sep}{edge.type_name}", ha="center", va=va, fontsize=size, color=color)


def draw(graph, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = graph.depth()
    rows: dict[int, list[str]] = {}
    for n in graph.nodes:
        rows.setdefault(col[n], []).append(n)
    pos = {n: (c * 3.2, -i * 1.6) for c, names in rows.items() for i, n in enumerate(names)}
    width = max(col.values()) * 3.2 + 4.2
    fig, ax = plt.subplots(figsize=(width * 0.95, 4.2))
    skips = backs = 0
    top = max(y for _, y in pos.values()) + 1.3  # room for the labels and the leaves above the row
    for e in graph.edges():
        (x0, y0), (x1, y1) = pos[e.src], pos[e.dst]
        span = col[e.dst] - col[e.src]
        if span < 0:  # feeds back upstream (world -> events): an arc over the row, its label on top
            backs += 1
            rad = 0.16 + 0.06 * backs
            ax.annotate(
                "",
                xy=(x1, y1 + 0.3),
                xytext=(x0, y0 + 0.3),
                arrowprops=dict(arrowstyle="->", color="#777", lw=1.1, connectionstyle=f"arc3,rad={rad}"),
            )
            peak = y0 + 0.3 + rad * abs(x1 - x0) / 2  # a quadratic Bezier's peak: half its control offset
            top = max(top, peak + 0.6)
            edge_label(ax, (x0 + x1) / 2, peak + 0.1, e, "bottom")
            continue
        if span == 1:  # neighbours: a straight arrow, its label above
            ax.annotate(
                "", xy=(x1 - 0.75, y1), xytext=(x0 + 0.75, y0), arrowprops=dict(arrowstyle="->", color="#444", lw=1.4)
            )
            edge_label(ax, (x0 + x1) / 2, y0 + 0.18, e, "bottom", sep="\n", size=8, color="#224")
            continue
        skips += 1  # a longer edge arcs below the row, each a little deeper than the last
        rad = 0.12 + 0.06 * skips
        ax.annotate(
            "",
            xy=(x1, y1 - 0.3),
            xytext=(x0, y0 - 0.3),
            arrowprops=dict(arrowstyle="->", color="#777", lw=1.1, connectionstyle=f"arc3,rad={rad}"),
        )
        t = 0.3  # the label sits on the arc near its start, clear of the arcs meeting at a shared target
        depth = 2 * t * (1 - t) * rad * (x1 - x0)  # a quadratic Bezier's offset at t (control: rad*length)
        edge_label(ax, x0 + t * (x1 - x0), y0 - 0.3 - depth - 0.05, e, "top")
    for n, (x, y) in pos.items():
        ax.text(
            x,
            y,
            n,
            ha="center",
            va="center",
            fontsize=11,
            weight="bold",
            bbox=dict(boxstyle="round,pad=0.5", fc="#dde8f5", ec="#2a4d7a"),
        )
    leaves: dict[str, list[str]] = {}
    for n, o in graph.leaves():  # read by no node: offered to skills, recorders, robots
        leaves.setdefault(n, []).append(f"{o.topic} {o.type.__name__}")
    for n, labels in leaves.items():  # one arrow per node, its outputs stacked above it
        x, y = pos[n]
        ax.annotate("", xy=(x, y + 0.75), xytext=(x, y + 0.3), arrowprops=dict(arrowstyle="->", color="#999", lw=1))
        ax.text(x, y + 0.8, "\n".join(labels), fontsize=7, color="#666", ha="center", va="bottom", linespacing=1.3)
    ys = [y for _, y in pos.values()]
    ax.set_xlim(-1.2, width - 0.8)
    ax.set_ylim(min(ys) - 0.3 - (0.12 + 0.06 * max(skips, 1)) * width / 3 - 0.5, top)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
