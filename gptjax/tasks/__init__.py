"""Downstream tasks: how examples are scored, and the evaluation of trained runs on them."""
