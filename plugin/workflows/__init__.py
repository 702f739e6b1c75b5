"""End-to-end jobs built from the other subpackages: train/eval a bundle, the quickstart."""
