"""Generating tunes from a trained model (plain sampling today; the pipeline and constrained decoding
arrive with the generation issue)."""
