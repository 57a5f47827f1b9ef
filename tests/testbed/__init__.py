"""Tests of the bundled testbed: task generator, step checker, training scripts, models."""
