"""A config cannot size an allocation (issue 32): YAML aliases are refused (the 603-byte "billion laughs"
under model.overrides.y_encoder.hf_config took `perception up` to 24 GB), every numeric knob is bounded
by what a machine could mean with the bound in the error, and a free-form hf_config is size-limited.
Every refusal is one line naming the dotted path; the CLI exits 2."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
import yaml

from perception.config import MAX_CONFIG_BYTES, ConfigError, load_config
from perception.model.config import MAX_HF_CONFIG_BYTES, MAX_HF_CONFIG_NUMBER

LAUGHS = """model:
  overrides:
    y_encoder:
      hf_config:
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refused(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    assert len(LAUGHS) < 700  # the attack was 603 bytes: 9**9 strings once expanded
    before = rss_mb()
    message = refused(tmp_path, LAUGHS)
    assert "aliases (*a) are not allowed" in message and "line 6" in message
    assert rss_mb() - before < 50
    # an anchor alone expands nothing and is harmless
    assert load_config_text(tmp_path, "name: &n plain\n").name == "plain"


def load_config_text(tmp_path: Path, text: str):
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return load_config(path)


def test_perception_up_on_the_billion_laughs_exits_2(tmp_path, capsys):
    from perception.cli import main

    (tmp_path / "laughs.yaml").write_text(LAUGHS)
    assert main(["up", str(tmp_path / "laughs.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aliases" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("path", "value", "bound"),
    [
        ("pipeline.encoder.max_batch", 10**9, "4096"),
        ("pipeline.encoder.window_frames", 10**9, "1024"),
        ("pipeline.decoder.beams", 10**6, "64"),
        ("pipeline.decoder.threads", 10**6, "1024"),
        ("pipeline.encoder.threads", 10**6, "1024"),
        ("bus.stats_interval_s", 1e-9, "0.01"),
        ("bus.max_msg_size", 2**62, str(2**31)),
        ("bus.shm.max_frame_bytes", 2**60, str(2**31)),
        ("pipeline.world.max_items", 10**12, "1000000"),
        ("pipeline.supervisor.startup_timeout_s", float("inf"), "finite"),
        ("pipeline.cameras.0.fps", float("nan"), "finite"),
        ("pipeline.cameras.0.seed", 2**64, str(2**32)),
    ],
)
def test_every_numeric_knob_is_bounded_and_the_error_says_the_bound(tmp_path, path, value, bound):
    config: dict = {}
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        if key == "0":
            continue
        nxt: dict = {}
        node[key] = [nxt] if key == "cameras" else nxt
        node = nxt
    node[keys[-1]] = value
    message = refused(tmp_path, yaml.safe_dump(config))
    assert f"is invalid: {path}: " in message and bound in message, message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"x_encoder": {"hidden": 10**9}}, "model.x_encoder.hidden = 1000000000: must be an integer in 1..16384"),
        ({"predictor": {"layers": 0}}, "model.predictor.layers = 0"),
        ({"embed_dim": 2**40}, "model.embed_dim"),
        ({"predictor": {"rope_theta": 1e300}}, "model.predictor.rope_theta"),
        ({"y_encoder": {"hf_config": {"vocab_size": 10**12}}}, f"at most {MAX_HF_CONFIG_NUMBER}"),
        ({"y_encoder": {"hf_config": {"k": "x" * (MAX_HF_CONFIG_BYTES + 1)}}}, f"at most {MAX_HF_CONFIG_BYTES}"),
        ({"y_encoder": {"hf_config": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}}, "deeper"),
        ({"x_encoder": {"nope": 1}}, "unknown x_encoder config keys"),
    ],
)
def test_model_sizes_and_hf_config_are_bounded_at_load(tmp_path, overrides, needle):
    message = refused(tmp_path, yaml.safe_dump({"model": {"overrides": overrides}}))
    assert "model:" in message and needle in message, message


def test_a_config_file_is_size_limited(tmp_path):
    big = "name: x\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    assert f"larger than {MAX_CONFIG_BYTES} bytes" in refused(tmp_path, big)


def test_a_checkpoint_config_json_is_bounded_too(tmp_path):
    from perception.model.checkpoint_config import CheckpointError, read_checkpoint_config
    from perception.model.config import preset_config

    model = preset_config("tiny").to_dict()
    model["x_encoder"]["hidden"] = 10**9
    (tmp_path / "config.json").write_text(json.dumps({"format": 1, "model": model}))
    with pytest.raises(CheckpointError, match=r"model.x_encoder.hidden = 1000000000: must be an integer in 1..16384"):
        read_checkpoint_config(tmp_path)
