"""`perception up` refuses a bad config before starting any process, naming every problem by its path; its
supervisor gives up a node in a crash loop (or one that cannot even be spawned) with one error line while
the rest keep running, and keeps stats only for the nodes it runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from perception.config import ConfigError, load_config
from perception.nodes.preflight import missing_weights, prepare_config
from perception.nodes.sources import FileCameraConfig, OpenCVCameraConfig, SyntheticCameraConfig
from tests.support import REPO, child_env

from .conftest import perception, pipeline_config, write_config


def test_bad_config_fails_before_any_process_starts(runtime_dir, random_checkpoint):
    cfg = pipeline_config(
        runtime_dir,
        random_checkpoint,
        cameras=[{"name": "cam 0", "fps": -1}, {"name": "cam1", "type": "file", "path": "/no/such.mp4"}],
        encoder={"max_batch": 0},
        events={"watch": [{"label": "x", "enter": 0.2, "leave": 0.6}]},
        nodes=["capture", "teleporter"],
    )
    path = write_config(runtime_dir / "bad.yaml", cfg)
    out = perception("up", str(path), "--duration", "1")
    assert out.returncode == 2
    for where in (
        "pipeline.cameras.0.name",
        "pipeline.cameras.0.fps",
        "pipeline.encoder.max_batch",
        "pipeline.events.watch.0",
        "pipeline.nodes",
    ):
        assert where in out.stderr, (where, out.stderr)
    assert "teleporter" in out.stderr
    assert sorted(p.name for p in runtime_dir.iterdir()) == ["bad.yaml"]  # no socket, no config copy: nothing ran


def test_missing_video_and_checkpoint_are_reported_with_their_paths(runtime_dir, random_checkpoint, tmp_path):
    cfg = pipeline_config(runtime_dir, tmp_path / "no-checkpoint")
    path = write_config(runtime_dir / "cfg.yaml", cfg)
    with pytest.raises(ConfigError) as err:
        prepare_config(path, source=str(tmp_path / "missing.mp4"))
    text = str(err.value)
    assert "pipeline.cameras.0.path: video file not found" in text and "missing.mp4" in text
    assert "model.checkpoint" in text and "no-checkpoint" in text
    ok = prepare_config(
        write_config(runtime_dir / "ok.yaml", pipeline_config(runtime_dir, random_checkpoint)), source="3"
    )
    assert ok.pipeline.cameras[0].type == "opencv" and ok.pipeline.cameras[0].index == 3


def test_source_shorthand_replaces_the_first_camera_with_each_kind(runtime_dir, random_checkpoint, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # prepare_config only checks that it exists
    cams = [{"name": "left", "fps": 12, "loop": True, "retry_max_s": 3, "seed": 5, "size": 32}, {"name": "right"}]
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint, cameras=cams))
    for source, cls, own in [
        ("synthetic", SyntheticCameraConfig, {"seed": 5, "size": 32}),
        (str(clip), FileCameraConfig, {"path": str(clip)}),
        ("rtsp://10.0.0.5:554/cam", FileCameraConfig, {"path": "rtsp://10.0.0.5:554/cam"}),
        ("0", OpenCVCameraConfig, {"index": 0}),
    ]:
        first, second = prepare_config(path, source=source).pipeline.cameras
        assert type(first) is cls and {k: getattr(first, k) for k in own} == own, source
        assert (first.name, first.fps, first.loop, first.retry_max_s) == ("left", 12.0, True, 3.0)  # kept
        assert second == SyntheticCameraConfig(name="right")  # only the first camera is replaced
    with pytest.raises(ConfigError, match=r"(?s)--source '': .*pipeline.cameras.0.path"):
        prepare_config(path, source="")


def test_ask_without_a_pipeline_says_so(runtime_dir, random_checkpoint):
    path = write_config(runtime_dir / "cfg.yaml", pipeline_config(runtime_dir, random_checkpoint))
    out = perception(
        "ask", "what colour is the circle?", "--choices", "red,blue", "--config", str(path), "--timeout", "1"
    )
    assert out.returncode == 1 and "no answer from the pipeline" in out.stderr
    out = perception("ask", "what?", "--choices", ",,", "--config", str(path))
    assert out.returncode == 2 and "--choices needs" in out.stderr


@pytest.mark.parametrize(
    "name",
    [
        "tiny-cpu.yaml",
        "vjepa2-vitl.yaml",
        "two-host.yaml",
        "three-host/camera.yaml",
        "three-host/server.yaml",
        "three-host/planner.yaml",
    ],
)
def test_shipped_configs_validate(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: the real-size weights are not here
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    config = load_config(name)
    assert config.pipeline.cameras and config.pipeline.nodes
    missing = missing_weights(config.model)
    if config.model.preset == "tiny":
        assert missing == [] and prepare_config(name) is not None
    else:  # valid, and its only problems are the pretrained weights this machine does not hold
        assert {where for where, _ in missing} == {
            "model.weights.x_encoder",
            "model.weights.predictor",
            "model.weights.y_encoder",
        }
        assert all(msg.startswith("MissingWeightsError: ") for _, msg in missing)
    if name == "tiny-cpu.yaml":  # issue 34: its watch phrase fired on shapes the shipped model cannot tell apart
        assert config.pipeline.events.watch == []
    if name == "two-host.yaml":
        assert config.bus.curve.enabled and config.bus.endpoint("pub").startswith("tcp://")
        assert "capture" not in config.pipeline.nodes  # the robot host runs capture


def test_heartbeat_timeout_is_validated_against_the_heartbeat_interval(runtime_dir, random_checkpoint):
    """`supervisor.heartbeat_timeout_s` (the wedged-node watchdog) must span 3 heartbeats; null turns it off."""
    cfg = pipeline_config(runtime_dir, random_checkpoint)  # stats_interval_s 0.5
    cfg["pipeline"]["supervisor"]["heartbeat_timeout_s"] = 1.0
    with pytest.raises(ConfigError, match=r"pipeline.supervisor.heartbeat_timeout_s: 1.0 s is under 3 heartbeats"):
        prepare_config(write_config(runtime_dir / "short.yaml", cfg))
    cfg["pipeline"]["supervisor"]["heartbeat_timeout_s"] = 0
    with pytest.raises(ConfigError, match=r"pipeline.supervisor.heartbeat_timeout_s"):
        prepare_config(write_config(runtime_dir / "zero.yaml", cfg))
    cfg["pipeline"]["supervisor"]["heartbeat_timeout_s"] = None
    assert prepare_config(write_config(runtime_dir / "off.yaml", cfg)).pipeline.supervisor.heartbeat_timeout_s is None


def test_missing_weights_are_one_clear_error_before_any_process_starts(tmp_path):
    """As a new user would: the real-size config on a machine without its weights. One MissingWeightsError
    per missing part, in one message, exit 2, and no process started (the encoder used to find out, and
    restart forever)."""
    rdir = tmp_path / "rt"
    cfg = yaml.safe_load((REPO / "configs" / "vjepa2-vitl.yaml").read_text())
    cfg["bus"]["runtime_dir"] = str(rdir)  # only the address of the bus substituted
    path = tmp_path / "vitl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = child_env(HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run(
        [sys.executable, "-m", "perception.cli", "up", str(path), "--duration", "5"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.count("MissingWeightsError") == 3 and "huggingface-cli download" in out.stderr
    assert "Traceback" not in out.stderr and "started" not in out.stderr
    assert not rdir.exists()  # no runtime dir, no socket: nothing ran


# The real Launcher and supervision loop in a child process (its own signal handlers and log stream); only
# the decoder's command line is replaced, through Launcher._argv, by one of these:
FAKE_DECODERS = {
    "exit": ["-c", "import sys; sys.exit(3)"],
    "spawn": None,  # a program that does not exist: create_subprocess_exec raises FileNotFoundError
    # once the world node is ready, reports ready (plus stats under 50 invented node names), then exits 3:
    # a crash loop after start-up
    "ready-then-exit": [
        "-c",
        textwrap.dedent("""
        import asyncio, sys
        from bus.message import Stats
        from bus.pubsub import Publisher, Subscriber
        from perception.config import AppConfig
        cfg = AppConfig.model_validate_json(open(sys.argv[1]).read())
        async def main():
            async with Subscriber(cfg.bus, ["stats/world"], name="fake-decoder") as sub:
                while not (await sub.recv(timeout=120)).msg.counters.get("ready"):
                    pass
            async with Publisher(cfg.bus, src="fake-decoder") as pub:
                for i in range(10):
                    await pub.publish("stats/decoder", Stats(node="decoder", counters={"ready": 1.0}))
                    for k in range(5):
                        await pub.publish(f"stats/x{i}{k}", Stats(node=f"x{i}{k}", counters={"ready": 1.0}))
                    await asyncio.sleep(0.05)
        asyncio.run(main())
        sys.exit(3)
    """),
    ],
}

DRIVER = """
import asyncio, json, sys
from perception.config import AppConfig
from perception.nodes.launcher import Launcher

config = AppConfig.model_validate_json(open(sys.argv[1]).read())
fake = json.loads(sys.argv[2])

class FakeDecoder(Launcher):
    def _argv(self, name):
        argv = super()._argv(name)
        if name != "decoder":
            return argv
        return ["/nonexistent/decoder"] if fake is None else [sys.executable, *fake, argv[-1]]

async def main():
    launcher = FakeDecoder(config)
    task = asyncio.create_task(launcher.run())
    async with asyncio.timeout(240):
        while "decoder" not in launcher.children or not launcher.children["decoder"].gave_up:
            if task.done():
                break
            await asyncio.sleep(0.05)
    world = launcher.children.get("world")
    world_alive = world is not None and world.proc is not None and world.proc.returncode is None
    launcher.request_stop()
    code = await task
    dec = launcher.children["decoder"]
    print(json.dumps({"code": code, "world_alive_after_give_up": world_alive, "world_pids": world.pids,
                      "decoder_pids": dec.pids, "failed_starts": dec.failed_starts, "gave_up": dec.gave_up,
                      "restarts": dec.restarts, "node_stats": sorted(launcher.node_stats)}))

asyncio.run(main())
"""


def supervise(runtime_dir, checkpoint, fake: str, max_restarts: int) -> tuple[dict, list[dict]]:
    cfg = pipeline_config(runtime_dir, checkpoint, nodes=["world", "decoder"])
    cfg["pipeline"]["supervisor"].update(
        max_restarts=max_restarts, backoff_initial_s=0.05, backoff_max_s=0.2, stable_after_s=600, startup_timeout_s=120
    )
    from perception.config import AppConfig

    path = runtime_dir / "app.json"
    path.write_text(AppConfig.model_validate(cfg).model_dump_json())
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(path), json.dumps(FAKE_DECODERS[fake])],
        cwd=REPO,
        env=child_env("INFO", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    logs = []
    for line in out.stderr.splitlines():
        try:
            logs.append(json.loads(line))
        except ValueError:
            pass
    return json.loads(out.stdout.strip().splitlines()[-1]), logs


def gave_up_lines(logs: list[dict]) -> list[dict]:
    return [r for r in logs if r.get("level") == "error" and "gave up:" in r.get("event", "")]


@pytest.mark.parametrize("fake", ["exit", "spawn"])
def test_a_node_that_cannot_start_is_given_up_once_and_fails_the_start(runtime_dir, random_checkpoint, fake):
    report, logs = supervise(runtime_dir, random_checkpoint, fake, max_restarts=2)
    assert report["gave_up"] and report["code"] == 1
    assert report["restarts"] == 2  # max_restarts, then no more
    if fake == "exit":
        assert len(report["decoder_pids"]) == 3 and report["failed_starts"] == 0
    else:  # no process at all: counted as failed starts, the supervisor carried on until it gave up
        assert report["decoder_pids"] == [] and report["failed_starts"] == 3
    lines = gave_up_lines(logs)
    assert len(lines) == 1, lines  # ONE line, not a traceback per attempt
    line = lines[0]
    assert line["node"] == "decoder" and line["restarts"] == 2 and "decoder" in line["event"]
    if fake == "exit":
        assert line["returncode"] == 3
    else:
        assert line["returncode"] is None and "FileNotFoundError" in line["error"]
    assert any(r.get("event") == "pipeline failed to start" and "decoder gave up" in r.get("error", "") for r in logs)
    assert not any("Traceback" in json.dumps(r) for r in logs)
    assert len(report["world_pids"]) == 1  # started once, stopped with the launcher


def test_a_crash_loop_after_start_up_gives_the_node_up_and_the_rest_keep_running(runtime_dir, random_checkpoint):
    report, logs = supervise(runtime_dir, random_checkpoint, "ready-then-exit", max_restarts=1)
    assert report["gave_up"] and report["restarts"] == 1 and len(report["decoder_pids"]) == 2
    assert report["world_alive_after_give_up"] and len(report["world_pids"]) == 1  # untouched by it
    assert report["code"] == 1  # `perception up` still says something went wrong
    assert any(r.get("event") == "pipeline up" for r in logs)
    lines = gave_up_lines(logs)
    assert len(lines) == 1 and lines[0]["returncode"] == 3 and lines[0]["node"] == "decoder"
    # stats/<anything> from the fake decoder under 50 invented names: only configured nodes are kept
    assert set(report["node_stats"]) <= {"world", "decoder", "bus"} and "decoder" in report["node_stats"]
