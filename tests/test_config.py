from pathlib import Path

import pytest
import yaml

from perception.config import CONFIG_DIR, AppConfig, ConfigError, load_config

APP_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("train-"))
TRAIN_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("train-*.yaml"))


@pytest.mark.parametrize("name", APP_CONFIGS)
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.name


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_shipped_training_configs_validate(name):
    from perception.train.config import FrozenTrainConfig, ShardedTrainConfig, TextDecoderConfig, load_train_config

    cfg = load_train_config(CONFIG_DIR / name)
    if isinstance(cfg, ShardedTrainConfig):  # users' shards: the model section must name a real preset
        assert cfg.steps > 0 and cfg.model_section().to_model_config().x_encoder.frozen
        return
    if isinstance(cfg, TextDecoderConfig):  # a decoder for a checkpoint the user names on the command line
        assert cfg.steps > 0 and cfg.decoder
        return
    if isinstance(cfg, FrozenTrainConfig):  # one learner on a shipped checkpoint's frozen X-encoder
        assert cfg.steps > 0 and (cfg.source_path() / "model.safetensors").exists()
        return
    assert cfg.total_steps > 0
    if cfg.model.checkpoint:  # a fine-tune starts from a checkpoint the repo ships
        assert (CONFIG_DIR.parent / cfg.model.checkpoint / "model.safetensors").exists()


def test_training_config_errors_name_their_path(tmp_path: Path):
    from perception.train.config import load_train_config

    bad = tmp_path / "train.yaml"
    bad.write_text("stage1:\n  stepz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(bad)
    assert "stage1.stepz" in str(err.value)


def test_unknown_key_is_reported_with_its_path(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus:\n  pubb: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "bus.pubb" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_old_events_lengths_in_windows_say_what_replaced_them(tmp_path: Path):
    old = tmp_path / "old.yaml"
    old.write_text("pipeline:\n  events:\n    min_len: 2\n    max_len: 60\n    top_labels: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(old)
    text = str(err.value)
    assert "pipeline.events.min_len: renamed to min_len_s (seconds of stream time" in text
    assert "pipeline.events.max_len: renamed to max_len_s (seconds of stream time" in text
    assert "pipeline.events.top_labels" in text  # the section's other errors are still reported
    assert "3 errors" in text


def test_events_lengths_are_positive_seconds_and_ordered(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pipeline:\n  events: {min_len_s: 2.0, max_len_s: 1.0}\n")
    with pytest.raises(ConfigError, match=r"pipeline\.events: .*max_len_s \(1\.0\) must be >= min_len_s \(2\.0\)"):
        load_config(path)
    path.write_text("pipeline:\n  events: {min_len_s: 0}\n")
    with pytest.raises(ConfigError, match=r"pipeline\.events\.min_len_s: Input should be greater than 0"):
        load_config(path)
    path.write_text("pipeline:\n  events: {max_len_s: null}\n")
    ev = load_config(path).pipeline.events
    assert (ev.min_len_s, ev.max_len_s) == (0.5, None)


def test_encoder_rpc_endpoint_follows_the_bus_endpoint_rule(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pipeline:\n  encoder: {rpc: 'tcp://0.0.0.0:7010'}\n")
    with pytest.raises(ConfigError, match=r"pipeline\.encoder\.rpc = 'tcp://0\.0\.0\.0:7010' is not a loopback"):
        load_config(path)
    path.write_text("pipeline:\n  encoder: {rpc: 'tipc://{2,1,1}'}\n")
    with pytest.raises(ConfigError, match=r"pipeline\.encoder\.rpc = 'tipc://.*only ipc://, inproc:// and tcp://"):
        load_config(path)
    path.write_text("pipeline:\n  encoder: {rpc: 'tcp://127.0.0.1:7010'}\n")
    assert load_config(path).pipeline.encoder.rpc == "tcp://127.0.0.1:7010"
    path.write_text("bus: {curve: {enabled: true}}\npipeline:\n  encoder: {rpc: 'tcp://0.0.0.0:7010'}\n")
    assert load_config(path).pipeline.encoder.rpc == "tcp://0.0.0.0:7010"  # exposed, with CURVE


def test_configured_cameras_must_fit_the_encoders_camera_bound(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pipeline:\n  cameras: [{name: a}, {name: b}, {name: c}]\n  encoder: {max_cameras: 2}\n")
    with pytest.raises(ConfigError, match=r"3 cameras but pipeline\.encoder\.max_cameras is 2"):
        load_config(path)


def test_cameras_are_typed_and_a_camera_without_type_is_synthetic(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "pipeline:\n  cameras:\n    - {name: a}\n    - {name: b, type: file, path: clip.mp4, fps: 25}\n"
        "    - {name: c, type: opencv, index: 1}\n"
    )
    a, b, c = load_config(path).pipeline.cameras
    assert (a.type, a.size, b.type, b.path, b.fps, c.type, c.index) == (
        "synthetic",
        64,
        "file",
        "clip.mp4",
        25.0,
        "opencv",
        1,
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("video.mp4", "{type: file, path: video.mp4}"),
        ("/data/clips/run 1.mp4", "{type: file, path: /data/clips/run 1.mp4}"),
        ("rtsp://10.0.0.5:554/cam", '{type: file, path: "rtsp://10.0.0.5:554/cam"}'),
        ("'0'", "{type: opencv, index: 0}"),
        ("synthetic", "{type: synthetic}"),
    ],
)
def test_an_old_source_key_shows_the_typed_form_at_the_cameras_path(tmp_path: Path, old: str, new: str):
    path = tmp_path / "old.yaml"
    path.write_text(f"pipeline:\n  cameras:\n    - {{name: ok}}\n    - name: cam1\n      source: {old}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"pipeline.cameras.1: 'source' is replaced by typed cameras; write {new}\n" in text + "\n", text
    assert "\n" not in text  # one error: one line
    path.write_text(f"pipeline:\n  cameras:\n    - {{name: ok}}\n    - {new}\n")  # written as it says
    assert load_config(path).pipeline.cameras[1].model_dump(include={"type", "path", "index"}) == yaml.safe_load(new)


def test_an_old_camera_gets_every_hint_at_once(tmp_path: Path):
    """A camera as old configs wrote it (dumped with every synthetic key): the typed form to write, and
    the keys its kind does not have, each at its own path."""
    path = tmp_path / "old.yaml"
    path.write_text("pipeline:\n  cameras:\n    - {name: cam0, source: '0', fps: 30, seed: 0, size: 64}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "pipeline.cameras.0: 'source' is replaced by typed cameras; write {type: opencv, index: 0}" in text
    assert "pipeline.cameras.0.seed: only cameras of type synthetic have 'seed'; this one is type opencv" in text
    assert "pipeline.cameras.0.size: only cameras of type synthetic have 'size'" in text
    assert "3 errors" in text


def test_an_unknown_camera_type_lists_the_valid_ones(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pipeline:\n  cameras:\n    - {name: cam0, type: webcam}\n")
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.cameras\.0: unknown camera type 'webcam'; "
        r"valid types: synthetic, file, opencv",
    ):
        load_config(path)


def test_camera_errors_carry_the_cameras_own_path(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pipeline:\n  cameras:\n    - {name: cam0, type: file, fps: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "pipeline.cameras.0.path: Field required" in text
    assert "pipeline.cameras.0.fps: Input should be greater than 0" in text
    assert ".file." not in text  # not pydantic's path through the union (cameras.0.file.path)


def test_the_camera_example_in_the_docs_validates():
    text = (CONFIG_DIR.parent / "docs" / "service.md").read_text()
    snippet = text.split("### Cameras", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    cams = AppConfig.model_validate(yaml.safe_load(snippet)).pipeline.cameras
    assert [c.type for c in cams] == ["synthetic", "file", "opencv"]
