"""``python -m metarl ...`` is the ``metarl`` command (so launchers such as torchrun can run it)."""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main())
