"""Latency: timing a built network, the lookup table of its parts, and the table's key."""
