"""Cost counting: UNet samples forward and backward, per image in eval.py's outputs."""

from __future__ import annotations

import pytest
import torch

from interpedit.backbones import tiny_unet2d_condition
from interpedit.diffusion import guided_denoiser, unet_denoiser
from interpedit.diffusion.unet_cost import count_unet_calls, find_unets
from interpedit.editing import EditingMethod
from interpedit.metrics.edit_cost import EditCost, per_image_cost


def test_a_cfg_batched_call_on_one_image_counts_two_forwards():
    unet = tiny_unet2d_condition(cross_attention_dim=8)
    cond, uncond = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    denoise = guided_denoiser(unet_denoiser(unet), cond, uncond, scale=7.5)
    with torch.no_grad(), count_unet_calls(unet) as cost:
        denoise(torch.randn(1, 4, 32, 32), torch.tensor([10]))
    assert (cost.forwards, cost.calls, cost.backwards) == (2, 1, 0)
    with torch.no_grad(), count_unet_calls(unet) as cost:  # guidance 1: the conditional branch alone
        guided_denoiser(unet_denoiser(unet), cond, None, scale=1.0)(torch.randn(1, 4, 32, 32), torch.tensor([10]))
    assert cost.forwards == 1


def test_backwards_count_the_samples_a_gradient_flowed_through():
    unet = tiny_unet2d_condition(cross_attention_dim=8)
    x = torch.randn(3, 4, 32, 32, requires_grad=True)
    with count_unet_calls(unet) as cost:
        out = unet(x, torch.tensor([5, 5, 5]), encoder_hidden_states=torch.randn(3, 5, 8)).sample
        with torch.no_grad():
            unet(x, torch.tensor([5, 5, 5]), encoder_hidden_states=torch.randn(3, 5, 8))  # no graph: no backward
        out.sum().backward()
    assert (cost.forwards, cost.backwards) == (6, 3)
    assert cost.seconds > 0
    out = unet(x, torch.tensor([5, 5, 5]), encoder_hidden_states=torch.randn(3, 5, 8)).sample
    out.sum().backward()  # outside the context: hooks are gone
    assert cost.backwards == 3 and not unet._forward_hooks and not unet._forward_pre_hooks


def test_unets_are_found_inside_any_module_and_per_image_shares_add_up():
    inner = tiny_unet2d_condition(cross_attention_dim=8)
    holder = torch.nn.ModuleDict({"unet": inner, "head": torch.nn.Linear(2, 2)})
    assert find_unets(holder) == [inner] and find_unets(torch.nn.Linear(2, 2)) == []
    with torch.no_grad(), count_unet_calls(holder) as cost:
        inner(torch.randn(4, 4, 32, 32), torch.tensor([1] * 4), encoder_hidden_states=torch.randn(4, 5, 8))
    shares = per_image_cost(cost, batch_size=2)
    assert shares["cost/unet_forwards"].tolist() == [2.0, 2.0]
    metric = EditCost()
    metric.update(shares)
    metric.update(per_image_cost(type(cost)(forwards=10, backwards=2, seconds=1.0), batch_size=1))
    result = metric.compute()
    assert float(result["cost/unet_forwards"]) == pytest.approx((2 + 2 + 10) / 3)
    assert float(result["cost/unet_backwards"]) == pytest.approx(2 / 3)


class CFGSamplingEdit(EditingMethod):
    """Three CFG-batched UNet calls per image, then the source back: 6 forwards per image, whatever the batch."""

    name = "cfg_sampling"

    def __init__(self) -> None:
        super().__init__()
        self.unet = tiny_unet2d_condition(cross_attention_dim=8)

    @torch.no_grad()
    def forward(self, batch):
        size = batch["source_image"].shape[0]
        cond = torch.zeros(size, 5, 8)
        denoise = guided_denoiser(unet_denoiser(self.unet), cond, torch.ones(1, 5, 8), scale=3.0)
        x = torch.zeros(size, 4, 32, 32)
        for _ in range(3):
            denoise(x, torch.full((size,), 10))
        return {"edited": batch["source_image"]}


def test_eval_py_records_the_cost_of_every_image(tmp_path, monkeypatch):
    import csv
    import glob
    import json
    import sys
    from pathlib import Path

    from eval import cli_main as eval_main
    from interpedit.shapes import export_benchmark

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(repo)
    export_benchmark(tmp_path / "bench", 5, seed=3)
    for method, expected in (("tests.test_unet_cost.CFGSamplingEdit", 6.0), ("interpedit.editing.IdentityEdit", 0.0)):
        out = tmp_path / method
        eval_main(["--config", str(repo / "configs/eval/shapes/identity.yaml"), "--data.init_args.root",
                   str(tmp_path / "bench"), "--data.init_args.batch_size", "2", "--trainer.default_root_dir", str(out),
                   "--trainer.enable_progress_bar", "false", "--model.init_args.method.class_path", method])
        (run_dir,) = glob.glob(str(out / "lightning_logs/version_*"))
        rows = list(csv.DictReader(open(Path(run_dir) / "per_image.csv")))
        assert len(rows) == 5 and all(float(row["cost/unet_forwards"]) == expected for row in rows)
        assert all(float(row["cost/unet_backwards"]) == 0.0 and float(row["cost/seconds"]) >= 0 for row in rows)
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        assert metrics["cost/unet_forwards"] == expected and metrics["cost/seconds"] >= 0
