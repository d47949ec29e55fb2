"""The node graph comes from the nodes' declarations: `perception graph` prints it, and a config whose
input nothing feeds says so before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys

from bus.component import Input, Output
from perception.messages import Caption, Embedding, Frame
from perception.nodes.graph import Graph, connects

from .conftest import REPO, child_env, perception, pipeline_config, write_config


def test_the_default_graph_is_the_pipeline_with_its_message_types():
    graph = Graph.of(["world", "decoder", "events", "encoder", "capture"])
    edges = {(e.src, e.dst, e.output.topic, e.type_name) for e in graph.edges()}
    assert edges == {
        ("capture", "encoder", "frames/{cam}", "Frame"),
        ("capture", "world", "pose/{cam}", "Pose"),
        ("encoder", "events", "embeddings/{cam}", "Embedding"),
        ("encoder", "world", "embeddings/{cam}", "Embedding"),
        ("events", "decoder", "decode/{cam}", "DecodeRequest"),
        ("events", "world", "events/{cam}", "Event"),
        ("decoder", "world", "captions/{cam}", "Caption"),
        ("world", "events", "watches/all", "WatchList"),
    }
    assert graph.unwired() == []
    assert [(n, o.topic) for n, o in graph.leaves()] == [
        ("capture", "frames_full/{cam}"),
        ("capture", "truth/{cam}"),
    ]
    assert graph.edges()[0].src == "capture"  # upstream first, the feedback edge last
    assert [e.src for e in graph.edges()][-1] == "world" and graph.depth()["world"] == 4


def test_topics_and_types_must_both_meet():
    out = Output("embeddings/{cam}", Embedding)
    assert connects(out, Input("embeddings/", Embedding, "h"))
    assert connects(out, Input("embeddings/cam0", None, "h"))  # a template field may complete either side
    assert not connects(out, Input("embeddings/{cam}", Caption, "h"))
    assert not connects(Output("frames/{cam}", Frame), Input("embeddings/", None, "h"))


def test_an_input_fed_by_nothing_names_who_would_feed_it():
    graph = Graph.of(["world", "decoder"])
    problems = {(p.node, p.input.topic): p for p in graph.unwired()}
    assert set(problems) == {
        ("world", "embeddings/{cam}"),
        ("world", "events/{cam}"),
        ("world", "pose/{cam}"),
        ("decoder", "decode/{cam}"),
    }
    assert problems[("world", "embeddings/{cam}")].publishers == ("encoder",)
    assert "add events to pipeline.nodes" in problems[("decoder", "decode/{cam}")].describe()
    assert Graph.of(["world", "decoder"]).unwired(["embeddings/", "events/", "decode/", "pose/"]) == []


def test_perception_graph_exit_code_and_launcher_warning(runtime_dir, random_checkpoint, tmp_path):
    full = write_config(tmp_path / "full.yaml", pipeline_config(runtime_dir, random_checkpoint))
    out = perception("graph", "--config", str(full))
    assert out.returncode == 0, out.stderr
    assert "capture -> encoder  frames/{cam}       Frame" in out.stdout and "wired to nothing" not in out.stdout
    half = write_config(
        tmp_path / "half.yaml", pipeline_config(runtime_dir, random_checkpoint, nodes=["world", "decoder"])
    )
    out = perception("graph", "--config", str(half))
    assert out.returncode == 1 and "inputs wired to nothing" in out.stdout
    assert "decoder reads decode/{cam} (DecodeRequest)" in out.stdout
    # the launcher says so too, while it checks the config: before any process starts
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from perception.nodes.preflight import prepare_config; prepare_config(sys.argv[1])",
            str(half),
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    warnings = [json.loads(x) for x in out.stderr.splitlines() if "input wired to nothing" in x]
    assert {w["node"] for w in warnings} == {"world", "decoder"}
    remote = write_config(
        tmp_path / "remote.yaml",
        pipeline_config(
            runtime_dir,
            random_checkpoint,
            nodes=["world", "decoder"],
            external_inputs=["embeddings/", "events/", "decode/", "pose/"],
        ),
    )
    assert perception("graph", "--config", str(remote)).returncode == 0


def test_perception_graph_draws_a_png(tmp_path):
    out = perception("graph", "--png", str(tmp_path / "g.png"), "--mermaid")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flowchart LR") and 'capture -- "frames/{cam}<br/>Frame" --> encoder' in out.stdout
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_graph_in_the_docs_is_the_graph_the_code_declares():
    import re

    text = (REPO / "docs" / "service.md").read_text()
    block = re.search(
        r"progress on a worker thread does not delay the exit\). `perception graph` prints who feeds "
        r"whom:\n\n```\n(.*?)```",
        text,
        re.S,
    ).group(1)
    assert block.rstrip("\n") == Graph.of(["world", "decoder", "events", "encoder", "capture"]).format()
