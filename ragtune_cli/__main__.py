"""`python -m ragtune_cli`: the same as the `ragtune` command."""

from ragtune_cli.main import app

app(prog_name="ragtune")
