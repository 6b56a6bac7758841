"""Evaluate few-shot adaptation of a trained run: the same as ``metarl eval`` (see ``--help``)."""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
