"""``python -m cfv``."""

from cfv.cli import main

main()
