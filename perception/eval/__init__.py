"""Model-agnostic evaluation pieces: CIDEr-D, task metrics, and selective-decoding segmenters.

Everything here is a pure function (or a small stateful class for the live online segmenter) over
numpy arrays and strings, so the evaluation suite and the events node share one tested implementation.
"""
