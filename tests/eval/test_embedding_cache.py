"""The stream-embedding cache: keyed by the model's weights, entries read back exactly, a damaged or
foreign entry recomputed rather than trusted."""

import numpy as np
import torch

from perception.eval.embedding_cache import EmbeddingCache, model_fingerprint

KEY = {"split": "val", "seed": 3, "seconds": 12.0, "step_s": 0.25, "window_s": 2.0}


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)


def test_round_trip_and_keys_do_not_collide(tmp_path):
    cache = EmbeddingCache(tmp_path, "model-a")
    embs, times = np.random.default_rng(0).normal(size=(10, 4)), np.arange(10) * 0.25
    assert cache.get(KEY) is None
    cache.put(KEY, embs, times)
    got = cache.get(KEY)
    assert got is not None and np.array_equal(got[0], embs) and np.array_equal(got[1], times)
    assert cache.get({**KEY, "seed": 4}) is None  # another stream
    assert EmbeddingCache(tmp_path, "model-b").get(KEY) is None  # another model
    assert (cache.hits, cache.misses) == (1, 2)
    assert not list(tmp_path.rglob("*.tmp"))


def test_damaged_or_pickled_entries_are_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path, "m")
    cache.put(KEY, np.zeros((3, 2)), np.arange(3.0))
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(b"not a zip")
    assert cache.get(KEY) is None
    np.savez(path, embs=np.array([object()], dtype=object), times=np.arange(1.0))  # a pickle inside
    assert cache.get(KEY) is None
    np.savez(path, embs=np.zeros((3, 2)), times=np.arange(4.0))  # shapes that disagree
    assert cache.get(KEY) is None
