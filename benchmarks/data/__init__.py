"""ShapesWorld generation throughput (`perception bench data`)."""
