"""What an h-space direction changes in shapes samples, read off the pixels.

Two measurements of the issue's shapes results:

- **Attribute effects of a sweep** (``attribute_shifts``): samples regenerated at scale ``-s`` and ``+s`` along a
  direction are compared object by object. The object is the sample's dominant palette colour
  (``object_readout``); its centroid gives x and y, its area the size, the shape templates of
  ``interpedit.hspace.shapes_labels`` its shape, and the non-palette pixels the background. A direction "moves x"
  when the centroid's x differs between the two ends of the sweep.
- **Locality of a masked direction** (``masked_change``): the mean absolute pixel change inside a region against the
  mean outside it, for masked-Jacobian directions and for PCA directions rescaled to the same norm at every step.

``python -m interpedit.hspace.sweep_effects pca --directions runs/hspace/shapes_pca`` prints the first table for the
top principal components; ``... jacobian --directions runs/hspace/shapes_pca`` the second, on two-object samples with
a mask on one object. Both write JSON with ``--out``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.user_errors import OptionError, run_command

EFFECTS = ("x", "y", "size", "colour", "shape", "background")
"""The attributes a sweep is read for."""


def object_readout(images: Tensor) -> dict[str, Tensor]:
    """The dominant-colour object of each image (B, 3, H, W) in [0, 1].

    Returns ``colour`` (B,) palette id (-1: no object pixel), ``x`` and ``y`` (B,) its centroid as fractions of the
    side, ``area`` (B,) its pixel count, ``shape`` (B,) template shape id, ``background`` (B, 3) the mean colour of
    the non-palette pixels in 0-255 units, and ``mask`` (B, H, W) the object's pixels.
    """
    from interpedit.hspace.shapes_labels import shape_by_template
    from interpedit.metrics.attribute_accuracy import palette_labels
    from interpedit.shapes.attributes import COLOURS

    images = images.float().cpu()
    labels = palette_labels(images)
    batch, side = images.shape[0], images.shape[-1]
    counts = torch.stack([(labels == c).flatten(1).sum(1) for c in range(len(COLOURS))], dim=1)
    colour = torch.where(counts.sum(1) > 0, counts.argmax(1), torch.full((batch,), -1, dtype=torch.long))
    mask = (labels == colour.view(-1, 1, 1)) & (colour.view(-1, 1, 1) >= 0)
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    area = mask.flatten(1).sum(1).float()
    safe = area.clamp(min=1)
    x = ((mask * xs).flatten(1).sum(1) / safe + 0.5) / side
    y = ((mask * ys).flatten(1).sum(1) / safe + 0.5) / side
    shape = torch.tensor([shape_by_template(mask[b].numpy()) if colour[b] >= 0 else -1 for b in range(batch)])
    background_pixels = (labels < 0).float()
    background = (images * 255 * background_pixels[:, None]).flatten(2).sum(-1) / background_pixels.flatten(1).sum(
        1, keepdim=True).clamp(min=1)
    return {"colour": colour, "x": x, "y": y, "area": area, "shape": shape, "background": background, "mask": mask}


def attribute_shifts(low: Tensor, high: Tensor) -> dict[str, float]:
    """How the samples ``high`` (scale +s) differ from ``low`` (scale -s), (B, 3, H, W) each.

    Over the pairs where both images have an object: ``x``, ``y`` the mean absolute centroid shift (fraction of the
    side) and ``x_signed``, ``y_signed`` its mean with sign (+: right, down); ``size`` the mean absolute log area
    ratio and ``size_signed`` its mean; ``colour`` and ``shape`` the fraction whose dominant colour or template shape
    differs; over all pairs, ``background`` the mean absolute change of the background's mean colour (0-255).
    ``found`` is the fraction of pairs with an object in both.
    """
    a, b = object_readout(low), object_readout(high)
    both = (a["colour"] >= 0) & (b["colour"] >= 0)
    out: dict[str, float] = {"found": float(both.float().mean())}
    if bool(both.any()):
        dx, dy = (b["x"] - a["x"])[both], (b["y"] - a["y"])[both]
        log_area = torch.log(b["area"][both].clamp(min=1) / a["area"][both].clamp(min=1))
        out.update(x=float(dx.abs().mean()), x_signed=float(dx.mean()), y=float(dy.abs().mean()),
                   y_signed=float(dy.mean()), size=float(log_area.abs().mean()), size_signed=float(log_area.mean()),
                   colour=float((a["colour"] != b["colour"])[both].float().mean()),
                   shape=float((a["shape"] != b["shape"])[both].float().mean()))
    else:
        out.update({name: math.nan for name in ("x", "x_signed", "y", "y_signed", "size", "size_signed", "colour",
                                                "shape")})
    out["background"] = float((b["background"] - a["background"]).abs().mean())
    return out


def masked_change(before: Tensor, after: Tensor, mask: Tensor) -> tuple[float, float]:
    """Mean absolute pixel change (0-255, over channels) inside and outside a (B, H, W) bool mask, over a batch."""
    change = (after.float() - before.float()).abs().mean(1) * 255
    inside = float(change[mask].mean()) if bool(mask.any()) else math.nan
    outside = float(change[~mask].mean()) if bool((~mask).any()) else math.nan
    return inside, outside


def object_box_mask(mask: Tensor, grow: int = 2) -> Tensor:
    """The bounding boxes of (B, H, W) bool object masks, grown by ``grow`` pixels, as bool masks."""
    boxes = torch.zeros_like(mask)
    side_y, side_x = mask.shape[-2:]
    for b in range(mask.shape[0]):
        ys, xs = torch.nonzero(mask[b], as_tuple=True)
        if len(ys):
            boxes[b, max(int(ys.min()) - grow, 0):min(int(ys.max()) + grow + 1, side_y),
                  max(int(xs.min()) - grow, 0):min(int(xs.max()) + grow + 1, side_x)] = True
    return boxes


def pca_offsets(tensors: dict[str, Tensor], components: int, global_pca: bool = False) -> list[Tensor]:
    """(T, *h) one-standard-deviation offsets of the first ``components`` saved principal components."""
    from interpedit.hspace.pca import PrincipalDirections

    prefix = "global_" if global_pca else ""
    directions = PrincipalDirections(tensors[f"{prefix}directions"], tensors[f"{prefix}std"])
    available = directions.directions.shape[0]
    if components > available:
        raise OptionError(f"--components: the directions hold {available} components, not {components}")
    return [directions.offset(k) for k in range(components)]


def _trajectories(model: Any, description: dict[str, Any], count: int, first_seed: int, batch_size: int):
    from interpedit.hspace.trajectory import sample_trajectory

    timesteps = [int(t) for t in description["timesteps"]]
    for start in range(first_seed, first_seed + count, batch_size):
        seeds = torch.arange(start, min(start + batch_size, first_seed + count))
        yield sample_trajectory(model.hspace, model.schedule, timesteps, model.noise(seeds),
                                eta=float(description.get("eta", 0.0)),
                                generator=torch.Generator().manual_seed(int(seeds[0])))


def pca_effects(directions: str, num_samples: int = 64, first_seed: int = 100_000, scale: float = 2.0,
                components: int = 5, global_pca: bool = False, batch_size: int = 16,
                control: bool = True) -> list[dict[str, Any]]:
    """``attribute_shifts`` between scale ``-scale`` and ``+scale`` along each of the first principal components,
    over ``num_samples`` fresh samples of the model the directions were found in (seeds from ``first_seed``). With
    ``control``, a last row ``random`` does the same along a random direction of the first component's norm at every
    step, the level at which a change says nothing about the component."""
    from interpedit.hspace.diffusion_model import HSpaceModel
    from interpedit.hspace.directions_file import SavedDirections
    from interpedit.hspace.trajectory import apply_direction

    saved = SavedDirections(directions)
    if saved.method != "pca":
        raise OptionError(f"--directions: {directions} holds {saved.method!r} directions; this needs PCA ones")
    model = HSpaceModel(saved.description["model"], saved.description["place"])
    offsets = pca_offsets(saved.tensors, components, global_pca)
    if control:  # a random direction with the first component's norm at every step: what any offset changes
        noise = torch.randn(offsets[0].shape, generator=torch.Generator().manual_seed(first_seed))
        steps = noise.shape[0]
        offsets.append(noise / noise.reshape(steps, -1).norm(dim=1).view(-1, *[1] * (noise.ndim - 1))
                       * offsets[0].reshape(steps, -1).norm(dim=1).view(-1, *[1] * (noise.ndim - 1)))
    lows: list[list[Tensor]] = [[] for _ in offsets]
    highs: list[list[Tensor]] = [[] for _ in offsets]
    for trajectory in _trajectories(model, saved.description, num_samples, first_seed, batch_size):
        for k, offset in enumerate(offsets):
            edited = apply_direction(model.hspace, model.schedule, trajectory, offset, [-scale, scale])
            lows[k].append(model.decode(edited[0]))
            highs[k].append(model.decode(edited[1]))
    rows = []
    for k in range(len(offsets)):
        name = f"pc{k}" if k < components else "random"
        row = {"component": name, **attribute_shifts(torch.cat(lows[k]), torch.cat(highs[k]))}
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{effect} {row[effect]:.3f}" for effect in EFFECTS), flush=True)
    return rows


def jacobian_locality(directions: str, num_samples: int = 16, first_seed: int = 200_000, scale: float = 4.0,
                      vectors: int = 1, grow: int = 2, max_iterations: int = 30, tol: float = 1e-3,
                      candidates: int = 256) -> dict[str, Any]:
    """The change inside a one-object mask against outside it, for the masked Jacobian's top singular vector and for
    the first principal component, at the same norm at every step.

    Samples of exactly two objects are drawn from fresh seeds (up to ``candidates`` tried); the mask is the box of
    the sample's dominant-colour object grown by ``grow`` pixels, resized to the UNet's output grid by area. Both
    directions get, at each step, the norm of ``scale`` standard deviations along the first principal component;
    the principal component's sign is aligned with the Jacobian vector's (their dot product), whose own sign is
    the solver's.
    """
    from interpedit.hspace.diffusion_model import HSpaceModel
    from interpedit.hspace.directions_file import SavedDirections
    from interpedit.hspace.jacobian import jacobian_directions
    from interpedit.hspace.shapes_labels import count_objects
    from interpedit.hspace.trajectory import apply_direction
    from interpedit.metrics.attribute_accuracy import palette_labels

    saved = SavedDirections(directions)
    if saved.method != "pca":
        raise OptionError(f"--directions: {directions} holds {saved.method!r} directions; this needs PCA ones "
                          "(they are the comparison)")
    model = HSpaceModel(saved.description["model"], saved.description["place"])
    pca = pca_offsets(saved.tensors, 1)[0]
    chosen, masks = [], []
    for trajectory in _trajectories(model, saved.description, candidates, first_seed, 16):
        images = model.decode(trajectory.x0)
        two = torch.nonzero(count_objects(palette_labels(images)) == 2).flatten().tolist()
        readout = object_readout(images)
        for b in two:
            if len(chosen) < num_samples:
                chosen.append((trajectory.select([b]), images[b : b + 1]))
                masks.append(object_box_mask(readout["mask"][b : b + 1], grow))
        if len(chosen) >= num_samples:
            break
    if not chosen:
        raise OptionError(f"no two-object sample among {candidates} seeds from {first_seed}; raise --candidates")
    results: dict[str, list[tuple[float, float]]] = {"jacobian": [], "pca": []}
    for index, ((trajectory, image), mask) in enumerate(zip(chosen, masks)):
        output_shape = trajectory.x0.shape[1:]
        grid = F.interpolate(mask[:, None].float(), size=output_shape[-2:], mode="area")
        output_mask = (grid > 0).float().expand(1, output_shape[0], *output_shape[-2:]).contiguous()
        found = jacobian_directions(model.hspace, model.schedule, trajectory, vectors, output_mask,
                                    max_iterations=max_iterations, tol=tol, seed=index)
        norms = scale * pca.flatten(1).norm(dim=1)  # (T,): `scale` std along the first component
        unit = found.vectors[0].flatten(1)
        vector = (unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12) * norms[:, None]).reshape(pca.shape)
        pc = pca.flatten(1)
        signs = torch.sign((pc * unit).sum(1))
        signs[signs == 0] = 1
        matched = (pc / pc.norm(dim=1, keepdim=True).clamp(min=1e-12) * (norms * signs)[:, None]).reshape(pca.shape)
        for name, direction in (("jacobian", vector), ("pca", matched)):
            edited = apply_direction(model.hspace, model.schedule, trajectory, direction.to(trajectory.x0), 1.0)
            results[name].append(masked_change(image, model.decode(edited), mask))
        print(f"sample {index + 1}/{len(chosen)}: jacobian in/out {results['jacobian'][-1][0]:.2f}/"
              f"{results['jacobian'][-1][1]:.2f}, pca in/out {results['pca'][-1][0]:.2f}/{results['pca'][-1][1]:.2f}",
              flush=True)
    summary: dict[str, Any] = {"samples": len(chosen), "scale": scale}
    for name, pairs in results.items():
        inside = sum(p[0] for p in pairs) / len(pairs)
        outside = sum(p[1] for p in pairs) / len(pairs)
        summary[name] = {"inside": inside, "outside": outside, "ratio": inside / max(outside, 1e-12)}
    return summary


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m interpedit.hspace.sweep_effects", description=__doc__.split(
        "\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    def command(name: str, help: str, samples: int, seed: int, scale: float, scale_help: str, directions_help: str,
                out_help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument("--directions", required=True, help=directions_help)
        parser.add_argument("--num-samples", type=int, default=samples)
        parser.add_argument("--first-seed", type=int, default=seed)
        parser.add_argument("--scale", type=float, default=scale, help=scale_help)
        parser.add_argument("--out", help=out_help)
        return parser

    pca = command("pca", "attributes moved by each principal component's sweep", 64, 100_000, 2.0,
                  "the sweep runs from -scale to +scale std", "a folder written with method: pca",
                  "write the table as JSON here")
    pca.add_argument("--components", type=int, default=5)
    pca.add_argument("--global-pca", action="store_true", help="the global components instead of per-step ones")
    pca.add_argument("--no-control", action="store_true", help="leave out the random-direction row")
    jac = command("jacobian", "change inside a one-object mask against outside: Jacobian against PCA", 16, 200_000,
                  4.0, "both directions' norm, in std of the first PC",
                  "a folder written with method: pca (the comparison)", "write the figures as JSON here")
    jac.add_argument("--max-iterations", type=int, default=30)
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        raise OptionError(f"--num-samples: must be at least 1, got {args.num_samples}")
    if args.command == "pca":
        result: Any = pca_effects(args.directions, args.num_samples, args.first_seed, args.scale, args.components,
                                  args.global_pca, control=not args.no_control)
        print(f"\nprincipal components of {args.directions}, {args.num_samples} samples, scale -{args.scale} vs "
              f"+{args.scale} std:")
        print("| component | x shift | y shift | size (log area) | colour changed | shape changed | background |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in result:
            print(f"| {row['component']} | {row['x']:.3f} ({row['x_signed']:+.3f}) | {row['y']:.3f} "
                  f"({row['y_signed']:+.3f}) | {row['size']:.3f} ({row['size_signed']:+.3f}) | {row['colour']:.3f} | "
                  f"{row['shape']:.3f} | {row['background']:.1f} |")
    else:
        result = jacobian_locality(args.directions, args.num_samples, args.first_seed, args.scale,
                                   max_iterations=args.max_iterations)
        print(f"\nmean absolute change (0-255) over {result['samples']} two-object samples, mask on one object:")
        print("| direction | inside the mask | outside | ratio |")
        print("| --- | --- | --- | --- |")
        for name in ("jacobian", "pca"):
            entry = result[name]
            print(f"| {name} | {entry['inside']:.2f} | {entry['outside']:.2f} | {entry['ratio']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_command(main)
