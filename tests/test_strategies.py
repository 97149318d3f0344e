import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.strategies import ReleasingDDPStrategy


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.validated_in_group = False

    def validation_step(self, batch, batch_idx):
        self.validated_in_group = dist.is_initialized()

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_one_process(strategy) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", devices=1, strategy=strategy, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(_Tiny(), DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4))
    return trainer


@pytest.fixture
def no_process_group():
    assert not dist.is_initialized()
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_plain_ddp_leaves_the_gloo_group_alive_and_ours_releases_it(no_process_group, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29511")
    fit_one_process(DDPStrategy(process_group_backend="gloo"))
    assert dist.is_initialized()  # what makes spawned gloo workers abort at exit now and then
    dist.destroy_process_group()
    trainer = fit_one_process(ReleasingDDPStrategy(process_group_backend="gloo"))
    assert trainer.global_step == 2 and not dist.is_initialized()


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_a_later_run_after_release_sets_the_group_up_again(no_process_group, monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29512")
    strategy = ReleasingDDPStrategy(process_group_backend="gloo")
    trainer = fit_one_process(strategy)
    trainer.validate(trainer.lightning_module, DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4))
    assert trainer.lightning_module.validated_in_group and not dist.is_initialized()
