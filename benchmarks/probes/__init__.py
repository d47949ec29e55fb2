"""Probes of what a checkpoint has learned (not reported metrics)."""
