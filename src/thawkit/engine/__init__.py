"""Trainer glue: stage control, parameter groups, callbacks and metrics."""
