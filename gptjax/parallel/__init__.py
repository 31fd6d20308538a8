"""The device mesh, the logical-axis rules that place arrays on it, and multi-process start-up."""
