"""Evaluation of generated (or any) ABC against real music: ``abcgen evaluate`` and its Python API."""
