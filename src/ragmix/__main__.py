"""``python -m ragmix`` runs the command line."""

from ragmix.cli.main import main

main()
