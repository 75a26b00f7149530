"""``python -m vigie.cli``: the ``vigie`` command, for child processes of the same venv."""

from vigie.cli import main

main()
