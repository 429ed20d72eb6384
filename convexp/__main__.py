"""``python -m convexp`` is the same as the ``convexp`` command."""

from convexp.cli import main

main()
