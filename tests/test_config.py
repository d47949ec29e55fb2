from pathlib import Path

import pytest

from perception.config import CONFIG_DIR, ConfigError, load_config


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.name


def test_unknown_key_is_reported_with_its_path(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus:\n  pubb: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "bus.pubb" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
