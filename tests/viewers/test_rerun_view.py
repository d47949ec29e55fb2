"""`perception view SESSION.mcap --save OUT.rrd`: a recording logged to Rerun, read back with the rerun SDK's
own reader: the expected entities, on the stream's timeline, with the scores the model's text encoder gives.

The session's windows carry the exact text embedding of a known text (tests/viewers/conftest.py), and the
command embeds the labels and watch phrases with the recorded session's checkpoint (found in its
metadata), so a score is 1.0 exactly on the windows made of that text."""

from __future__ import annotations

import numpy as np

from perception.viewers.rerun_sink import slug
from tests.support import perception_child

from .conftest import CAM, CAPTIONS, LABELS, RUNTIME_WATCH, WATCH, column, rrd_rows, window_text


async def test_view_save_writes_an_rrd_with_the_session(session_recording, tmp_path):
    out = tmp_path / "session.rrd"
    proc = await perception_child(
        "view", str(session_recording.path), "--save", str(out), "--labels", ",".join(LABELS), "--max-fps", "10"
    )
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert out.stat().st_size > 0

    rows = rrd_rows(out)
    expected = {
        f"/{CAM}/frame",
        f"/{CAM}/captions",
        f"/{CAM}/events",
        f"/{CAM}/timeline/segments",
        f"/{CAM}/timeline/captions",
        f"/{CAM}/timeline/truth",
        f"/{CAM}/timeline/watch/{slug(WATCH)}",
        f"/{CAM}/watch/{slug(WATCH)}",
        f"/{CAM}/watch/{slug(RUNTIME_WATCH)}",
        f"/{CAM}/similarity",
        "/labels",
    }
    assert expected <= set(rows), sorted(set(rows))

    # frames at 10 fps of 30, PNG (small frames), on the stream timeline at their stream times
    frames = rows[f"/{CAM}/frame"]
    assert sum(rb.num_rows for rb in frames) == 30
    assert column(frames, "EncodedImage:media_type")[0] == ["image/png"]
    stream_ns = sorted(v for rb in frames for v in rb.column("stream").cast("int64").to_pylist())
    assert stream_ns[:3] == [0, 100_000_000, 200_000_000]

    # captions as text logs at their segments' starts; segments and ground truth as state lanes
    assert [t[0].split(": ", 1)[1] for t in column(rows[f"/{CAM}/captions"], "TextLog:text")] == CAPTIONS
    assert [s[0] for s in column(rows[f"/{CAM}/timeline/truth"], "StateChange:state")] == CAPTIONS
    assert len(column(rows[f"/{CAM}/timeline/segments"], "StateChange:state")) == 2
    lane = column(rows[f"/{CAM}/timeline/watch/{slug(WATCH)}"], "StateChange:state")
    assert [s[0] if s else None for s in lane] == ["on", None]  # on, then a reset (the lane's gap)

    # watch scores: one per window, the cosine of the window's embedding to the phrase's S_Y
    texts = session_recording.texts
    n = len(session_recording.windows)
    watch = [v[0] for v in column(rows[f"/{CAM}/watch/{slug(WATCH)}"], "Scalars:scalars")]
    want = [float(texts[WATCH] @ texts[window_text(k)]) for k in range(n)]
    np.testing.assert_allclose(watch, want, atol=1e-5)
    assert watch[4] > 0.9999 and watch[5] > 0.9999
    assert len(column(rows[f"/{CAM}/watch/{slug(RUNTIME_WATCH)}"], "Scalars:scalars")) == n

    # the heat-map: [labels, history], the newest window in the last column; row k % 3 is 1.0 where the
    # window was made of that label
    heat = column(rows[f"/{CAM}/similarity"], "Tensor:data")
    assert len(heat) == n
    last = heat[-1][0]
    assert last["shape"] == [len(LABELS), 120] and last["names"] == ["label", "window"]
    grid = np.asarray(last["buffer"], dtype=np.float32).reshape(last["shape"])
    for k in range(n):
        col = grid[:, 120 - n + k]
        want = [float(texts[label] @ texts[window_text(k)]) for label in LABELS]
        np.testing.assert_allclose(col, want, atol=1e-5)
        if window_text(k) in LABELS:
            assert int(np.argmax(col)) == LABELS.index(window_text(k))
    assert any(LABELS[0] in t[0] for t in column(rows["/labels"], "TextDocument:text"))
    assert '"windows_scored": 11' in stdout.decode()
