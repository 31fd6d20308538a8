"""Multi-process runs on JAX's own runtime (TPU pod slices, SLURM, or explicit)."""
from __future__ import annotations

import os

import jax


def initialize(coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """Start jax.distributed: explicit when a coordinator is given, automatic on TPU VMs / SLURM."""
    if coordinator:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    elif "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
    elif os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()
