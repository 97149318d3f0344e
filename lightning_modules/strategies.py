"""DDP that releases its process group when the run ends.

Lightning destroys the default process group at exit only for NCCL. With gloo (DDP on CPUs, as in
``configs/trainer/ddp_sim.yaml``) a spawned worker that exits with the group still alive aborts now and then
while its gloo threads are torn down ("terminate called without an active exception", SIGABRT), after the run
itself has finished; the parent then reports the worker as failed. Destroying the group in ``teardown``, the
strategy's last step in every process, as the PyTorch docs ask before a process exits, removes that race.

    trainer:
      strategy:
        class_path: lightning_modules.strategies.ReleasingDDPStrategy
        init_args: {start_method: spawn}
"""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy


class ReleasingDDPStrategy(DDPStrategy):
    """``DDPStrategy`` (any launcher, any backend) whose ``teardown`` also destroys the default process group.

    A later ``fit``/``validate`` with the same trainer sets the group up again (Lightning initialises it when it
    is missing), so nothing else changes.
    """

    def teardown(self) -> None:  # noqa: D102 - Lightning hook
        super().teardown()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
