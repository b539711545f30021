"""Formal proofs (yowasp-sby + z3) of the accelerator's bus-facing blocks."""
