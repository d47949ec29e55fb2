from pathlib import Path

import pytest

from perception.config import CONFIG_DIR, ConfigError, load_config


APP_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("train-"))
TRAIN_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("train-*.yaml"))


@pytest.mark.parametrize("name", APP_CONFIGS)
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.name


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_shipped_training_configs_validate(name):
    from perception.train.config import load_train_config

    cfg = load_train_config(CONFIG_DIR / name)
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
