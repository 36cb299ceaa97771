"""`python -m socialcard`: the same command line as the `socialcard` script (app.cli)."""
