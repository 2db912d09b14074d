"""The network: its record (Arch), the blocks, the builder, and its analytic cost and memory."""
