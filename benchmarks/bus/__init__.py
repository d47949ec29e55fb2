"""Bus benchmarks (transports side by side, recorder write path), their messages and the bus demo."""
