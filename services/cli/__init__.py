"""The `python scheduler.py COMMAND` command-line interface."""
