"""Downstream subscribers: narrator, watcher, planner, timeline, and the SDK to write your own."""
