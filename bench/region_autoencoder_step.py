"""Training-step time of the region autoencoder against a text-conditioned fine-tuning step of the same UNet.

    python bench/region_autoencoder_step.py --batch-size 64 --resolution 32
    python bench/region_autoencoder_step.py --preset sd15 --batch-size 32 --precision bf16-mixed     # GPU only

(a) is ``RegionAutoencoderModule.losses`` (region dropout, two region encodings, conditioning, diffusion and
consistency losses) + backward + gradient clipping + AdamW step + EMA update: the work of one Lightning training
step, without the Lightning loop around it. (b) is the step of diffusers' ``train_text_to_image.py`` on the very
same UNet instance: a frozen ``CLIPTextModel`` whose width matches the UNet's cross-attention gives the
``encoder_hidden_states`` (computed every step under ``no_grad``, as diffusers does, unless
``--text-states precomputed``), then the epsilon loss + backward + clipping + AdamW step + EMA update. Both steps
use the same batch, the same noise schedule, the same precision and the same optimiser settings. Data loading and
tokenisation are outside both (the tokens are computed once, as diffusers' data pipeline does).

Steps are timed alternately (ABAB...) after warm-up so that drift (clocks, thermals, other processes) hits both
alike; on CUDA every step is bracketed by ``torch.cuda.synchronize()``. The ratio (a)/(b) of the medians is the
figure of merit (aim for <= 1.15x). Further arguments are LightningCLI overrides applied on top of the config,
e.g. ``--model.init_args.ema_decay null`` or ``--model.init_args.gradient_checkpointing true``. See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: `train`, `lightning_modules` live at the root
    sys.path.insert(0, str(REPO))

DEFAULT_CONFIG = REPO / "configs/shapes/region_autoencoder.yaml"
TARGET_RATIO = 1.15
"""The overhead the region autoencoder should stay under, relative to plain text-conditioned fine-tuning."""
PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16}
OVERRIDE_PREFIXES = ("--model", "--data", "--trainer", "--seed_everything")

# --preset sd15: random weights of Stable Diffusion 1.5's sizes, stacked on the shapes config.
SD15_UNET: dict[str, Any] = {"in_channels": 4, "out_channels": 4, "cross_attention_dim": 768}
"""On top of ``UNet2DConditionModel()``'s defaults, which are SD-1.x's (320/640/1280/1280, 2 layers, 8 heads)."""
SD15_VAE: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
SD15_ENCODER: dict[str, Any] = {
    # DINOv2 ViT-B/14 with registers, random weights, at 224 px (a 16x16 patch grid), read and frozen as in
    # configs/region_autoencoder/sd15_dinov2.yaml.
    "features": {"init_args": {"model": "vit_base_patch14_reg4_dinov2", "pretrained": False,
                               "model_kwargs": {"img_size": 224}, "layers": [0, 5, 8, 11],
                               "layer_merge": "concat", "trainable": "frozen"}},
    # RegionEncoder's own defaults, which are sized for DINOv2 and Stable Diffusion.
    "token_dim": 768,
    "pooling_width": 256,
    "pooling_depth": 2,
    "pooling_heads": 4,
    "position_embedding_dim": 96,
    "film_hidden_dim": 256,
}
SD15_TEXT_ENCODER: dict[str, Any] = {
    # CLIP ViT-L/14's text tower, which SD 1.5 uses.
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
SD15_RESOLUTION = 256
"""Default image side for ``--preset sd15``: 32x32 latents."""


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The bench's own flags, and the LightningCLI overrides that follow them."""
    parser = argparse.ArgumentParser(
        prog="python bench/region_autoencoder_step.py",
        description=__doc__.split("\n\n")[0],
        epilog="Further --model.*, --data.*, --trainer.* arguments are LightningCLI overrides of the config.",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="region autoencoder experiment config")
    parser.add_argument("--preset", choices=("shapes", "sd15"), default="shapes",
                        help="shapes: the config's sizes; sd15: SD-1.5-sized UNet, VAE, CLIP text and a "
                             "DINOv2-B-sized encoder, random weights (GPU only unless --force)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: the config's)")
    parser.add_argument("--resolution", type=int, default=None,
                        help=f"image side in pixels (default: the config's; {SD15_RESOLUTION} with sd15)")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default=None,
                        help="32-true, or bf16 autocast as Lightning's bf16-mixed (default: the config's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations of each step first")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations of each step, interleaved")
    parser.add_argument("--text-states", choices=("per-step", "precomputed"), default="per-step",
                        help="(b) runs the frozen text encoder every step under no_grad (diffusers' script), "
                             "or once before timing")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for PyTorch (default: its own choice); 1 is steadier on a shared machine")
    parser.add_argument("--seed", type=int, default=0, help="seed of the text encoder and the per-step noise")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, print torch.profiler's top operators for one step of each")
    parser.add_argument("--force", action="store_true", help="run --preset sd15 on a CPU anyway")
    args, overrides = parser.parse_known_args(argv)
    for token in overrides:
        if token.startswith("-") and not token.startswith(OVERRIDE_PREFIXES):
            parser.error(f"unrecognised argument {token} (LightningCLI overrides start with "
                         f"{', '.join(OVERRIDE_PREFIXES)})")
    for name in ("batch_size", "resolution"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.iterations < 2:
        parser.error(f"--iterations must be at least 2 (for an interquartile range), got {args.iterations}")
    return args, overrides


# ---------------------------------------------------------------------------------------------------- building
@dataclass
class Bench:
    """What both steps share, built from the experiment config."""

    module: Any  # RegionAutoencoderModule
    batch: dict[str, Any]
    gradient_clip_val: float | None
    precision: str
    text_encoder: torch.nn.Module
    input_ids: torch.Tensor


def write_yaml(path: Path, content: dict[str, Any]) -> str:
    import yaml

    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def sd15_config(folder: Path, resolution: int, seed: int) -> str:
    """A config stacked on the experiment's: SD-1.5-sized parts, random weights; the VAE saved under ``folder``."""
    from diffusers import AutoencoderKL

    # The module loads a VAE only by id or folder, so a random one is saved and loaded like a pretrained one.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        AutoencoderKL(**SD15_VAE).save_pretrained(folder / "vae")
    return write_yaml(folder / "sd15.yaml", {
        "model": {"init_args": {
            "encoder": {"init_args": SD15_ENCODER},
            "unet": {**SD15_UNET, "sample_size": resolution // 8},
            "scheduler": SD15_SCHEDULER,
            "vae": str(folder),
            "coordinate_channels": False,  # SD's UNet takes the 4 latent channels only: no coordinate
            "layout_channels": 0,  # or token-layout channels (those are for decoders trained from scratch)
        }},
    })


def text_encoder_for(cross_attention_dim: int, preset: str, seed: int) -> tuple[torch.nn.Module, Any]:
    """A frozen random ``CLIPTextModel`` as wide as the UNet's cross-attention, and a tokenizer for shapes captions.

    shapes: the text tower of the shapes CLIP (``pretrained/shapes_clip``: 4 layers, 64 positions) at the UNet's
    width; sd15: CLIP ViT-L/14's text tower (12 layers, 77 positions). The shapes world's word-level tokenizer
    stands in for CLIP's BPE (no download); prompts are padded to the full length, as diffusers does.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    from interpedit.backbones.shapes_tokenizer import build_shapes_tokenizer
    from interpedit.clip.shapes_clip import DEFAULT_TEXT_CONFIG
    from interpedit.shapes.vocabulary import vocabulary

    if preset == "sd15":
        config = dict(SD15_TEXT_ENCODER)
    else:
        width = cross_attention_dim
        config = {**DEFAULT_TEXT_CONFIG, "hidden_size": width, "intermediate_size": 4 * width}
    if config["hidden_size"] != cross_attention_dim or cross_attention_dim % config["num_attention_heads"]:
        raise ValueError(
            f"text encoder: width {config['hidden_size']} with {config['num_attention_heads']} heads does not fit "
            f"the UNet's cross_attention_dim {cross_attention_dim}"
        )
    tokenizer = build_shapes_tokenizer(vocabulary(), model_max_length=config["max_position_embeddings"])
    config.setdefault("vocab_size", len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPTextModel(CLIPTextConfig(
            **config,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ))
    return encoder.requires_grad_(False).eval(), tokenizer


def build(args: argparse.Namespace, overrides: list[str], device: torch.device, folder: Path) -> Bench:
    """Module and batch from the experiment config, as ``train.py fit`` would build them."""
    from train import cli_main

    for name in ("lightning.pytorch", "lightning.fabric"):  # no "GPU available" banners in the printout
        logging.getLogger(name).setLevel(logging.WARNING)
    configs = ["--config", args.config]
    resolution = args.resolution or (SD15_RESOLUTION if args.preset == "sd15" else None)
    if args.preset == "sd15":
        configs += ["--config", sd15_config(folder, resolution, args.seed)]
    cli_args = [
        *configs,
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(folder),  # nothing is written, but never into the repository
        "--data.init_args.num_workers", "0",
        *(["--data.init_args.batch_size", str(args.batch_size)] if args.batch_size else []),
        *(["--data.init_args.resolution", str(resolution)] if resolution else []),
        *overrides,
    ]
    # LightningCLI warns when it is given args while sys.argv holds others: these are the bench's, not its.
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        cli = cli_main(cli_args, run=False)
    module, datamodule = cli.model, cli.datamodule
    model = module.model
    factor = model.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    if datamodule.resolution % factor:
        scale = "the UNet's downsampling" + (" times the VAE's" if model.vae is not None else "")
        raise SystemExit(f"--resolution {datamodule.resolution}: must be a multiple of {factor} ({scale})")
    precision = str(args.precision or cli.config["trainer"]["precision"])
    if precision not in PRECISIONS:
        raise SystemExit(f"{args.config}: trainer.precision {precision!r}; the bench runs 32-true or bf16-mixed")

    keys = ("source_image", "source_masks", "source_region_valid", "target_image", "target_masks",
            "target_region_valid")
    loaded = next(iter(datamodule.train_dataloader()))
    batch = {key: loaded[key].to(device) for key in keys}
    text_encoder, tokenizer = text_encoder_for(int(model.unet.config.cross_attention_dim), args.preset, args.seed)
    input_ids = tokenizer(loaded["caption"], padding="max_length", truncation=True, return_tensors="pt").input_ids
    return Bench(
        module=module.to(device).train(),
        batch=batch,
        gradient_clip_val=cli.trainer.gradient_clip_val,
        precision=precision,
        text_encoder=text_encoder.to(device),
        input_ids=input_ids.to(device),
    )


# ---------------------------------------------------------------------------------------------------- the steps
Step = Callable[[int], None]


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def adamw(groups: list[dict[str, Any]], module: Any) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=module.hparams.learning_rate, weight_decay=module.hparams.weight_decay)


def clip_and_step(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, clip: float | None) -> None:
    if clip:
        torch.nn.utils.clip_grad_norm_(parameters, clip)
    optimizer.step()


def region_autoencoder_step(bench: Bench, device: torch.device, seed: int) -> Step:
    """(a): ``training_step`` + backward + clipping + AdamW + EMA, with the consistency loss at its full weight."""
    module = bench.module
    autocast = autocast_for(bench.precision, device)
    # configure_optimizers' parameter groups; it cannot be called without a fitted Trainer (it reads the total
    # number of steps for the learning-rate schedule, whose per-step cost is negligible).
    encoder_params = [p for p in module.model.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder_params}
    other_params = [p for p in module.model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    lr = module.hparams.learning_rate
    optimizer = adamw([{"params": other_params, "lr": lr},
                       {"params": encoder_params, "lr": lr * module.hparams.encoder_lr_multiplier}], module)
    parameters = other_params + encoder_params
    weight = module.hparams.consistency_weight  # after its warm-up; the second encoding runs at any weight

    def step(iteration: int) -> None:
        generator = torch.Generator(device=device).manual_seed(seed + iteration)
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            losses = module.losses(bench.batch, generator)
            loss = losses["diffusion"] + weight * losses["consistency"]
        loss.backward()
        clip_and_step(parameters, optimizer, bench.gradient_clip_val)
        if module.ema is not None:
            module.ema.update()

    return step


def text_conditioned_step(bench: Bench, device: torch.device, seed: int, precomputed: bool) -> Step:
    """(b): diffusers' text-to-image fine-tuning step on the same UNet, schedule, batch and optimiser settings."""
    from interpedit.diffusion import EMA, diffusion_loss, training_target

    module = bench.module
    model, unet = module.model, module.model.unet
    autocast = autocast_for(bench.precision, device)
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = adamw([{"params": parameters}], module)
    ema = EMA(unet, decay=module.hparams.ema_decay) if module.ema is not None else None
    images = bench.batch["target_image"]

    def text_states() -> torch.Tensor:
        with torch.no_grad(), autocast():
            return bench.text_encoder(bench.input_ids, return_dict=False)[0]

    cached = text_states() if precomputed else None

    def step(iteration: int) -> None:
        generator = torch.Generator(device=device).manual_seed(seed + iteration)
        optimizer.zero_grad(set_to_none=True)
        states = cached if cached is not None else text_states()
        with autocast():
            x0 = model.to_decoder_space(images)  # the VAE encoding with sd15, as in diffusers' script
            noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
            t = model.schedule.sample_timesteps(x0.shape[0], generator=generator, device=device)
            # The same UNet input as (a): with coordinate channels on, both get them.
            noisy = model.unet_input(model.schedule.add_noise(x0, noise, t))
            output = unet(noisy, t, encoder_hidden_states=states).sample
            loss = diffusion_loss(output, training_target(model.schedule, x0, noise, t))
        loss.backward()
        clip_and_step(parameters, optimizer, bench.gradient_clip_val)
        if ema is not None:
            ema.update()

    return step


# ---------------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Step, iteration: int, device: torch.device) -> tuple[float, float]:
    """Seconds of one step, and its peak CUDA memory in GiB (NaN on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    step(iteration)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def interleaved(
    steps: Sequence[Step], warmup: int, iterations: int, device: torch.device
) -> tuple[list[list[float]], list[float]]:
    """Seconds of every timed iteration of each step, measured ABAB... after ``warmup`` untimed rounds, and each
    step's peak CUDA memory in GiB (NaN on CPU)."""
    for iteration in range(warmup):
        for step in steps:
            step(iteration)
    times: list[list[float]] = [[] for _ in steps]
    peaks: list[list[float]] = [[] for _ in steps]
    for iteration in range(warmup, warmup + iterations):
        for index, step in enumerate(steps):
            seconds, peak = timed(step, iteration, device)
            times[index].append(seconds)
            peaks[index].append(peak)
    return times, [max(values) for values in peaks]


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def profile(steps: Sequence[tuple[str, Step]], iteration: int, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, step in steps:
        with torch_profile(activities=activities) as profiler:
            step(iteration)
            synchronize(device)
        print(f"\nprofile of one step {name} (top operators by self time)")
        print(profiler.key_averages().table(sort_by=sort_by, row_limit=12))


def parameter_count(module: torch.nn.Module, trainable: bool | None = None) -> str:
    count = sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and cuda) else "cpu")
    if args.preset == "sd15" and device.type != "cuda" and not args.force:
        print("--preset sd15 builds Stable-Diffusion-sized models (two AdamW states and EMAs of an 860M-parameter "
              "UNet, about 30 GB before activations) and is meant for a GPU; none is in use here. "
              "Add --force to run it on the CPU anyway.", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="region_autoencoder_step_") as folder:
        bench = build(args, overrides, device, Path(folder))
    steps = [
        ("(a) region autoencoder", region_autoencoder_step(bench, device, args.seed)),
        ("(b) text-conditioned UNet",
         text_conditioned_step(bench, device, args.seed, precomputed=args.text_states == "precomputed")),
    ]
    times, peaks = interleaved([step for _, step in steps], args.warmup, args.iterations, device)

    module, batch = bench.module, bench.batch
    model = module.model
    batch_size, _, side, _ = batch["target_image"].shape
    latent = side // model.vae_scale_factor
    unet_input = f"{model.unet.config.in_channels}x{latent}x{latent}"
    where = (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
             else f"cpu ({torch.get_num_threads()} threads)")
    ema = f"EMA {module.hparams.ema_decay}" if module.ema is not None else "no EMA"
    text_config = bench.text_encoder.config
    print("region autoencoder training step vs text-conditioned fine-tuning of the same UNet")
    print(f"  preset {args.preset} ({Path(args.config).name}{' + SD-1.5 sizes' if args.preset == 'sd15' else ''}"
          f"{', overrides ' + ' '.join(overrides) if overrides else ''}), device {where}, precision {bench.precision}")
    print(f"  batch {batch_size}, {side}x{side} px, UNet input {unet_input}, {batch['target_masks'].shape[1]} region "
          f"slots; {args.warmup} warm-up + {args.iterations} timed iterations of each, interleaved ABAB")
    print(f"  UNet {parameter_count(model.unet, True)} trained in both; (a) also trains the region encoder "
          f"{parameter_count(model.encoder, True)} (features: {model.encoder.features.trainable}) and conditioning "
          f"{parameter_count(model.conditioning, True)}")
    print(f"  (b) CLIPTextModel {parameter_count(bench.text_encoder)} frozen (width {text_config.hidden_size}, "
          f"{text_config.num_hidden_layers} layers, {bench.input_ids.shape[1]} tokens), states "
          f"{'computed every step under no_grad' if args.text_states == 'per-step' else 'precomputed once'}")
    print(f"  both: AdamW, gradient clipping {bench.gradient_clip_val}, {ema}"
          f"{', frozen VAE encoding every step' if model.vae is not None else ''}")
    print()
    memory = device.type == "cuda"
    print(f"{'step':<28}{'median ms':>11}{'IQR ms':>9}{'images/s':>10}" + (f"{'peak GiB':>10}" if memory else ""))
    medians = []
    for (name, _), seconds, peak in zip(steps, times, peaks):
        q1, median, q3 = quartiles(seconds)
        medians.append(median)
        print(f"{name:<28}{median * 1e3:>11.1f}{(q3 - q1) * 1e3:>9.1f}{batch_size / median:>10.1f}"
              + (f"{peak:>10.1f}" if memory else ""))
    paired = [a / b for a, b in zip(*times)]
    p1, p_median, p3 = quartiles(paired)
    ratio = medians[0] / medians[1]
    verdict = "met" if ratio <= TARGET_RATIO else "not met"
    print(f"ratio (a)/(b) {ratio:.2f}x   (aim for <= {TARGET_RATIO:.2f}x: {verdict}; "
          f"per-iteration ratios: median {p_median:.2f}x, IQR {p3 - p1:.2f})")

    if args.profile:
        profile(steps, args.warmup + args.iterations, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
