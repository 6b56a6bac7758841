"""``metarl train CONFIG --nproc N``: the ranks started through torch's elastic launcher.

The same as ``torchrun --nproc-per-node N -m metarl train CONFIG ...``, for users who do not
want to type torchrun: :func:`launch` hands the command to
:func:`torch.distributed.launcher.api.elastic_launch` with a c10d rendezvous (on a free port
chosen by the system for one machine, or at ``--rdzv-endpoint`` for several), no restarts, and
the collective timeout as the rendezvous timeout. Every rank runs ``python -m metarl train ...``;
rank 0 reports, and a rank that dies becomes one line naming it (:class:`RankFailedError`).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import socket
import sys
from collections.abc import Sequence

__all__ = [
    "LaunchSpec",
    "PortInUseError",
    "RankFailedError",
    "RendezvousFailedError",
    "check_port_free",
    "launch",
    "parse_endpoint",
]


class PortInUseError(OSError):
    """The rendezvous port of a one-machine launch is already taken."""


class RendezvousFailedError(RuntimeError):
    """The nodes did not all join the rendezvous in time, or it could not be reached."""


class RankFailedError(RuntimeError):
    """A rank exited with an error or was killed; the launcher stopped the others.

    Attributes:
        exitcode: The exit code the command should return.
        reported: Whether rank 0 already reported the failure itself (then nothing is printed).
    """

    def __init__(self, message: str, exitcode: int, reported: bool) -> None:
        super().__init__(message)
        self.exitcode, self.reported = exitcode, reported


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to start the ranks.

    Attributes:
        nproc: Ranks on this machine.
        nnodes: Machines; each runs the same command (rendezvous at ``endpoint``).
        endpoint: ``HOST:PORT`` of the c10d rendezvous; None on one machine: a free local port.
        timeout_s: Seconds the rendezvous waits for every node (the collective timeout).
    """

    nproc: int
    nnodes: int = 1
    endpoint: str | None = None
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise ValueError(f"--nproc and --nnodes must be >= 1, got {self.nproc}, {self.nnodes}")
        if self.nnodes > 1 and not self.endpoint:
            raise ValueError(
                "--nnodes > 1 needs --rdzv-endpoint HOST:PORT (a machine and free port every node "
                "can reach; run the same command on every node)"
            )
        if self.endpoint:
            parse_endpoint(self.endpoint)


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``"HOST:PORT"`` as ``(host, port)``.

    Raises:
        ValueError: If it is not ``HOST:PORT`` with a port in 0..65535.
    """
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    return host, int(port)


def check_port_free(host: str, port: int) -> None:
    """Raises :class:`PortInUseError` if ``host:port`` cannot be bound (port 0 always can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                errno.EADDRINUSE,
                f"port {port} on {host} is already in use (another run or program holds it): "
                "choose another with --rdzv-endpoint HOST:PORT, or leave it out to let the "
                "system pick a free port",
            ) from None


def _describe(err: BaseException) -> RankFailedError:
    """The one-line :class:`RankFailedError` of a ``ChildFailedError``."""
    failures = err.failures  # type: ignore[attr-defined]  # ChildFailedError's {rank: failure}
    if 0 in failures and failures[0].exitcode in (1, 2, 130):
        return RankFailedError("rank 0 failed", failures[0].exitcode, reported=True)
    rank, failure = err.get_first_failure()  # type: ignore[attr-defined]  # ChildFailedError
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with code {failure.exitcode}"
    return RankFailedError(
        f"rank {rank} (pid {failure.pid}) {how}; the other ranks were stopped: continue from the "
        "last checkpoint with --resume",
        1,
        reported=False,
    )


def launch(spec: LaunchSpec, worker_args: Sequence[str], verbose: bool = False) -> None:
    """Starts ``python -m metarl *worker_args`` on ``spec.nproc`` ranks and waits for them.

    Args:
        spec: Ranks, nodes, rendezvous.
        worker_args: The command line of every rank (without the launch options).
        verbose: Keep torch's launcher log messages (else only its errors... as one line here).

    Raises:
        PortInUseError: If a one-machine ``--rdzv-endpoint`` port is taken.
        RendezvousFailedError: If the rendezvous did not complete within ``spec.timeout_s``.
        RankFailedError: If a rank failed (``reported`` when rank 0 printed why).
        RuntimeError: If called inside a launched rank (``--nproc`` under torchrun).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if "TORCHELASTIC_RUN_ID" in os.environ:
        raise ValueError("--nproc starts the ranks itself: under torchrun leave it out")
    endpoint = spec.endpoint or "127.0.0.1:0"  # port 0: the rendezvous store binds a free one
    if spec.nnodes == 1 and spec.endpoint:
        check_port_free(*parse_endpoint(spec.endpoint))
    timeout = max(1, math.ceil(spec.timeout_s))
    if not verbose:  # the launcher logs each stop at WARNING; the failure is reported once here
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=spec.nnodes,
        max_nodes=spec.nnodes,
        nproc_per_node=spec.nproc,
        run_id="metarl",
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint,
        rdzv_configs={"join_timeout": timeout, "timeout": timeout},
        max_restarts=0,
    )
    # as torchrun does: each rank's OpenMP would otherwise take every core, and N ranks spinning
    # at OpenMP barriers on shared cores ran torch.compile'd kernels 25-100x slower (run.num_threads
    # still sets a rank's torch threads; a user's OMP_NUM_THREADS is kept)
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None and spec.nproc > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        elastic_launch(config, sys.executable)("-m", "metarl", *worker_args)
    except ChildFailedError as err:
        raise _describe(err) from err
    except RendezvousError as err:
        detail = str(err).strip().splitlines()
        raise RendezvousFailedError(
            f"the rendezvous at {endpoint} did not complete within {timeout} s "
            f"({type(err).__name__}{': ' + detail[0][:200] if detail else ''}): start the same "
            f"command on all {spec.nnodes} nodes with the same --rdzv-endpoint, or raise "
            "run.collective_timeout"
        ) from err
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
