"""``python -m qualgate``: the same CLI as the ``qualgate`` command."""

from qualgate.cli import main

main()
