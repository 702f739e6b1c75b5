"""``python -m mmalign.plugin``: the same CLI as ``mmalign``."""

from mmalign.plugin.cli import main

main()
