"""VL-JEPA: X-encoder, predictor, Y-encoder, Y-decoder. Knows nothing of ZeroMQ."""
