"""Training: the three VL-JEPA stages, one loop, data-parallel over torchrun ranks.

`perception train` (perception/commands/train.py) reads a TrainConfig (configs/train-tiny.yaml) and calls
`train(cfg, out_dir, resume=...)` from perception/train/loop.py.
"""
