"""Two local processes in one gloo group, for the data-parallel tests (``mp.spawn`` children)."""

import os
import socket


def free_port() -> int:
    """A TCP port that was free on localhost a moment ago (the rendezvous port of a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(rank: int, port: int, world_size: int = 2) -> None:
    """Sets the variables torchrun would set for ``rank`` of a one-machine group on ``port``."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
