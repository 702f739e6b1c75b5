"""Alignment: closed-form fits, the joint teacher, the low-rank student, losses, training, bundles, evaluation."""
