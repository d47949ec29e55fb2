"""Watcher and timeline on a replayed session: an MCAP file of Embedding/Event/Caption messages whose
embeddings are the model's embed_text of known captions (what a perfectly trained model would predict),
replayed by the real `perception replay` process.

Threshold 0.9: the planted phrase's windows score 1.0 (same text through the same Y-encoder). The test
first checks that the unrelated phrase stays below 0.9 on every window of this model, so its silence is
a property of the watcher, not an accident of the session."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from skillkit import PLANTED, SCRIPT, UNRELATED, perception, write_session

from bus.pubsub import Subscriber
from skills.watcher import Watcher

THRESHOLD = 0.9


@pytest.fixture(scope="module")
def session(tmp_path_factory, small_model):
    path = tmp_path_factory.mktemp("session") / "session.mcap"
    write_session(path, small_model)
    return path


async def test_watcher_fires_on_planted_phrase_only(proxy, app_config, config_file, session, small_model):
    vecs = small_model.embed_text([t for t, _ in SCRIPT] + [UNRELATED]).float().numpy()
    unrelated_max = float(np.max(vecs[:-1] @ vecs[-1]))
    assert unrelated_max < THRESHOLD, f"precondition: unrelated phrase scores {unrelated_max} on this model"

    planted, unrelated = (Watcher(app_config, p, threshold=THRESHOLD) for p in (PLANTED, UNRELATED))
    alerts = await Subscriber(app_config.bus, ["alerts/"], name="t").start()
    tasks = [asyncio.create_task(w.run()) for w in (planted, unrelated)]
    await asyncio.wait_for(asyncio.gather(planted.ready.wait(), unrelated.ready.wait()), 120)
    rc, out, err = await _replay(session, config_file)
    assert rc == 0, err
    got = await alerts.recv(timeout=10)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert got.topic == "alerts/cam0"
    assert got.msg.phrase == PLANTED and got.msg.via == "embedding" and got.msg.score == pytest.approx(1.0, abs=1e-4)
    # the planted segment is windows 6..11: the alert names the first of them
    assert got.msg.start_s == pytest.approx(6 * 0.25)
    assert planted.counters["alerts"] == 1  # hysteresis: one alert for the whole segment
    assert unrelated.counters["alerts"] == 0
    assert unrelated.counters["handled.on_embedding"] == 18  # it did see every window
    assert unrelated.max_score["cam0"] == pytest.approx(unrelated_max, abs=1e-4)
    with pytest.raises(TimeoutError):
        await alerts.recv(timeout=0.3)
    alerts.close()


async def _replay(session, config_file):
    proc = await perception("replay", str(session), "--config", str(config_file), "--rate", "0")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_timeline_png_from_recording(session, config_file, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "timeline.png"
    proc = await perception(
        "skill",
        "timeline",
        "--config",
        str(config_file),
        "--input",
        str(session),
        "--out",
        str(out),
        "--watch",
        PLANTED,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert f"timeline {out}" in stdout.decode()
    img = mpimg.imread(out)[..., :3]  # float [H, W, 3]
    h, w, _ = img.shape
    assert h > 200 and w > 600
    px = (img * 255).round().astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(px, axis=0, return_counts=True)
    plenty = colours[counts > 200]  # colours covering real areas (bars, lines), not anti-aliasing specks
    saturated = [c for c in plenty if int(c.max()) - int(c.min()) > 60]  # not white/grey/black
    assert len(saturated) >= 3, f"expected coloured segment bars and score lines, got {plenty.tolist()}"
    # the segment band (top quarter) holds three differently coloured bars
    band = (img[: h // 3] * 255).round().astype(np.uint8).reshape(-1, 3)
    bc, bn = np.unique(band, axis=0, return_counts=True)
    assert sum(1 for c, n in zip(bc, bn) if n > 500 and int(c.max()) - int(c.min()) > 40) >= 2
