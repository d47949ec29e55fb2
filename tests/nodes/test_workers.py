"""Which encoder worker encodes which camera (perception/nodes/workers.py): the rules every worker applies
alike to the live set it hears."""

from __future__ import annotations

import itertools

import pytest

from perception.config import AppConfig
from perception.nodes.launcher import processes
from perception.nodes.workers import Liveness, WorkerPlan, encoder_endpoint, encoder_endpoints, holders, worker_index

CAMS = tuple(f"cam{i}" for i in range(8))


def test_homes_are_balanced_and_pins_are_kept():
    plan = WorkerPlan(3, CAMS, {"cam7": 0})
    table = plan.assignment([0, 1, 2])
    assert table["cam7"] == 0 and table["cam0"] == 1 and table["cam1"] == 2 and table["cam2"] == 0
    loads = sorted(list(table.values()).count(k) for k in range(3))
    assert loads == [2, 3, 3]


def test_a_dead_workers_cameras_spread_over_the_live_and_nobody_elses_move():
    plan = WorkerPlan(4, CAMS)
    full = plan.assignment(range(4))
    for dead in range(4):
        live = [k for k in range(4) if k != dead]
        table = plan.assignment(live)
        assert set(table.values()) <= set(live)
        assert all(table[c] == k for c, k in full.items() if k != dead)  # survivors keep theirs
        loads = [list(table.values()).count(k) for k in live]
        assert max(loads) - min(loads) <= 1, (dead, table)


def test_every_worker_computes_the_same_owner_from_the_same_live_set():
    plan = WorkerPlan(3, CAMS[:4])
    for live in ([0, 1, 2], [2, 0], [1]):
        for cam in [*CAMS[:4], "invented", "another"]:
            owners = {plan.owner(cam, list(order)) for order in itertools.permutations(live)}
            assert len(owners) == 1 and owners <= set(live)


def test_an_unconfigured_camera_moves_only_when_its_worker_dies():
    plan = WorkerPlan(4, ())
    names = [f"x{i}" for i in range(200)]
    before = {n: plan.owner(n, [0, 1, 2, 3]) for n in names}
    after = {n: plan.owner(n, [0, 1, 3]) for n in names}
    assert all(after[n] == before[n] for n in names if before[n] != 2)
    assert all(after[n] != 2 for n in names)
    assert min(list(before.values()).count(k) for k in range(4)) > 25  # spread, not all on one


def test_liveness_counts_a_silent_worker_dead_and_an_unheard_one_live_only_at_first():
    live = Liveness(3, me=0, timeout_s=3.0, now=100.0)
    assert live.live(101.0) == [0, 1, 2]  # nobody heard yet: they may be starting beside us
    live.beat(1, 101.0, ready=True)
    live.beat(2, 101.0, ready=False)  # loading: not live on its word
    assert live.live(103.5) == [0, 1]
    assert live.live(104.5) == [0]  # 1 silent 3.5 s
    live.beat(1, 105.0, ready=True)
    assert live.live(105.5) == [0, 1]
    live.beat(7, 105.0, ready=True)  # not one of ours
    assert live.live(105.5) == [0, 1]


def test_holders_pick_the_newest_window_of_live_workers():
    beats = {0: (10.0, {"holds.cam0": 40.0}), 1: (10.0, {"holds.cam0": 42.0, "holds.cam1": 7.0}), 2: (1.0, {})}
    beats[2] = (1.0, {"holds.cam1": 99.0})  # silent since t=1: dead
    assert holders(beats, now=11.0, timeout_s=3.0) == {"cam0": 1, "cam1": 1}


def test_worker_names_endpoints_and_processes_follow_the_config(tmp_path):
    cams = [{"name": c} for c in CAMS[:3]]
    one = AppConfig.model_validate({"bus": {"runtime_dir": str(tmp_path)}, "pipeline": {"cameras": cams}})
    assert encoder_endpoints(one) == [f"ipc://{tmp_path}/encoder"] and "encoder" in processes(one)
    three = AppConfig.model_validate(
        {
            "bus": {"runtime_dir": str(tmp_path)},
            "pipeline": {"cameras": cams, "encoder": {"workers": 3, "rpc": "tcp://127.0.0.1:7710"}},
        }
    )
    assert encoder_endpoints(three) == [f"tcp://127.0.0.1:{7710 + k}" for k in range(3)]
    assert encoder_endpoint(three) == "tcp://127.0.0.1:7710"
    assert [p for p in processes(three) if p.startswith("encoder")] == ["encoder.0", "encoder.1", "encoder.2"]
    assert worker_index("encoder.2", 3) == 2 and worker_index("encoder.3", 3) is None
    assert worker_index("encoder.x", 3) is None and worker_index("events", 3) is None


@pytest.mark.parametrize(
    "encoder, error",
    [({"workers": 2, "assign": {"cam0": 2}}, "outside 0..1"), ({"workers": 2, "assign": {"nope": 0}}, "not in")],
)
def test_bad_assignments_are_config_errors(encoder, error):
    with pytest.raises(ValueError, match=error):
        AppConfig.model_validate({"pipeline": {"cameras": [{"name": "cam0"}], "encoder": encoder}})
