"""Meta-train from a YAML config: the same as ``metarl train`` (see ``--help``)."""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
