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
    assert cfg.stage1.steps > 0


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
