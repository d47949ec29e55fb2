"""The node graph, read from the nodes' declarations: who feeds whom, with which message type.

Nothing here starts a process or imports a model: the launcher checks a config with it before anything
starts (an input that nothing in `pipeline.nodes` publishes is reported, unless another host publishes
it: `pipeline.external_inputs`), and `perception graph` prints it or draws it.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from bus.component import Input, Output, component_inputs
from perception.nodes import NODE_NAMES


@dataclass(frozen=True)
class Edge:
    src: str  # node name
    output: Output
    dst: str
    input: Input

    @property
    def type_name(self) -> str:
        return self.output.type.__name__


@dataclass(frozen=True)
class Unwired:
    """An input no configured node publishes to; `publishers` are the nodes that would."""

    node: str
    input: Input
    publishers: tuple[str, ...]

    def describe(self) -> str:
        kind = self.input.type.__name__ if self.input.type is not None else "any message"
        hint = f"add {' or '.join(self.publishers)} to pipeline.nodes, or " if self.publishers else ""
        return (
            f"{self.node} reads {self.input.topic} ({kind}) but no node in pipeline.nodes publishes it: "
            f"{hint}list {self.input.prefix!r} in pipeline.external_inputs if another host publishes it"
        )


def node_class(name: str) -> type:
    return importlib.import_module(NODE_NAMES[name]).NODE


def connects(out: Output, inp: Input) -> bool:
    """Whether messages on `out` reach `inp`: their topics can meet and the input takes the type."""
    o, i = out.prefix, inp.prefix
    topics_meet = o.startswith(i) or i.startswith(o)  # a `{field}` may complete either prefix
    return topics_meet and (inp.type is None or issubclass(out.type, inp.type))


@dataclass(frozen=True)
class Graph:
    nodes: tuple[str, ...]
    outputs: dict[str, tuple[Output, ...]]
    inputs: dict[str, tuple[Input, ...]]

    @classmethod
    def of(cls, names: list[str] | tuple[str, ...], config=None) -> Graph:
        """The graph of these nodes; with the AppConfig, a node whose outputs depend on it (the encoder's
        `mode: vlm` publishes captions, not embeddings) says so through `outputs_for(config)`."""
        classes = {n: node_class(n) for n in names}

        def outputs(c) -> tuple[Output, ...]:
            if config is not None and hasattr(c, "outputs_for"):
                return tuple(c.outputs_for(config).values())
            return tuple(c.outputs.values())

        return cls(
            tuple(names),
            {n: outputs(c) for n, c in classes.items()},
            {n: tuple(component_inputs(c)) for n, c in classes.items()},
        )

    def edges(self) -> list[Edge]:
        """Upstream first: capture's edges before the encoder's, and so on."""
        return self._layout[0]

    def depth(self) -> dict[str, int]:
        """Column of each node: the longest chain of forward edges leading to it."""
        return self._layout[1]

    @functools.cached_property
    def _layout(self) -> tuple[list[Edge], dict[str, int]]:
        """The sorted edges and each node's depth, computed once (the graph is immutable)."""
        edges = [
            Edge(src, out, dst, inp)
            for src in self.nodes
            for out in self.outputs[src]
            for dst in self.nodes
            if dst != src
            for inp in self.inputs[dst]
            if connects(out, inp)
        ]
        back = self._back_edges(edges)
        forward = [e for k, e in enumerate(edges) if k not in back]
        depth = {n: 0 for n in self.nodes}
        for _ in self.nodes:  # longest chain of edges leading to each node (feedback edges do not count)
            for e in forward:
                depth[e.dst] = max(depth[e.dst], min(depth[e.src] + 1, len(self.nodes)))
        return sorted(edges, key=lambda e: (depth[e.src], depth[e.dst])), depth

    def _back_edges(self, edges: list[Edge]) -> set[int]:
        """Indices of the edges that feed back upstream (world -> events, beside events -> world): the
        edges against a node order from Eades' greedy heuristic for a small feedback set (sources first,
        sinks last, else the node with the most outgoing over incoming edges), ties in `nodes` order."""
        left = list(self.nodes)
        live = list(range(len(edges)))
        head: list[str] = []
        tail: list[str] = []
        while left:
            ins = {n: sum(edges[k].dst == n for k in live) for n in left}
            outs = {n: sum(edges[k].src == n for k in live) for n in left}
            sink = next((n for n in left if outs[n] == 0), None)
            source = next((n for n in left if ins[n] == 0), None)
            if sink is not None:
                tail.insert(0, sink)
                node = sink
            else:
                node = source if source is not None else max(left, key=lambda n: outs[n] - ins[n])
                head.append(node)
            left.remove(node)
            live = [k for k in live if node not in (edges[k].src, edges[k].dst)]
        rank = {n: i for i, n in enumerate(head + tail)}
        return {k for k, e in enumerate(edges) if rank[e.src] >= rank[e.dst]}

    def unwired(self, external: list[str] | tuple[str, ...] = ()) -> list[Unwired]:
        """Inputs that no node of the graph feeds and that are not declared to come from another host."""
        fed = {(e.dst, e.input) for e in self.edges()}
        everyone = Graph.of(list(NODE_NAMES))
        out = []
        for node in self.nodes:
            for inp in self.inputs[node]:
                if (node, inp) in fed or any(inp.prefix.startswith(x) or x.startswith(inp.prefix) for x in external):
                    continue
                publishers = tuple(
                    n for n in everyone.nodes if n != node and any(connects(o, inp) for o in everyone.outputs[n])
                )
                out.append(Unwired(node, inp, publishers))
        return out

    def leaves(self) -> list[tuple[str, Output]]:
        """Outputs no node of the graph reads: what the service offers to skills, recorders, robots."""
        read = {(e.src, e.output) for e in self.edges()}
        return [(n, o) for n in self.nodes for o in self.outputs[n] if (n, o) not in read]

    def format(self, external: list[str] | tuple[str, ...] = ()) -> str:
        lines = ["edges (publisher -> subscriber: topic, message type):"]
        for e in self.edges():
            lines.append(f"  {e.src:>8} -> {e.dst:<8} {e.output.topic:<18} {e.type_name}")
        lines.append("read by no node (there for skills, recorders, robots):")
        for n, o in self.leaves():
            lines.append(f"  {n:>8} -> *        {o.topic:<18} {o.type.__name__}")
        lines.append("  every node -> *     stats/<node>       Stats")
        problems = self.unwired(external)
        if problems:
            lines.append("inputs wired to nothing:")
            lines.extend(f"  {p.describe()}" for p in problems)
        return "\n".join(lines)

    def mermaid(self) -> str:
        lines = ["flowchart LR"]
        for e in self.edges():
            lines.append(f'  {e.src} -- "{e.output.topic}<br/>{e.type_name}" --> {e.dst}')
        for n, o in self.leaves():
            lines.append(f'  {n} -- "{o.topic}<br/>{o.type.__name__}" --> out_{n}_{o.prefix.strip("/")}((out))')
        return "\n".join(lines)
