"""Evaluation: eval sets, metrics, paired adapter-vs-base runs and the gate."""
