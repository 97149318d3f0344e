"""Mask filtering: connected components, small holes and islands, area and coverage limits, top-K.

Neither scipy nor OpenCV is a dependency, so connected components are labelled here with a vectorised
union-find over pixel adjacencies (numpy): every foreground pixel starts as its own tree, each round hooks
the larger root of every edge that still joins two trees onto the smaller one, and pointer jumping
flattens the trees. The number of rounds grows with the logarithm of the component size, not with its
diameter (which is what a max-pool flood fill would need).

Hole filling and island removal follow SAM's ``remove_small_regions`` (segment_anything/utils/amg.py) with
two deliberate differences: a hole is a background component that does not reach the image border (the
usual morphological definition, like ``scipy.ndimage.binary_fill_holes``), and holes use the connectivity
complementary to the islands' (4 when islands use 8), so that a diagonal gap in an outline does not make a
hole leak out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def label_components(mask: np.ndarray | torch.Tensor, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Label the connected components of a boolean mask.

    Args:
        mask: (H, W) bool.
        connectivity: 4 (edges) or 8 (edges and corners).

    Returns:
        ``(labels, areas)``: (H, W) int64 with 0 for background and 1..n for components numbered in raster
        order of their first pixel, and (n,) int64 areas in pixels (``areas[i]`` is label ``i + 1``).
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    mask = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    mask = mask.astype(bool, copy=False)
    height, width = mask.shape
    labels = np.zeros(height * width, dtype=np.int64)
    foreground = np.flatnonzero(mask)
    n = foreground.size
    if n == 0:
        return labels.reshape(height, width), np.zeros(0, dtype=np.int64)
    compact = np.full(height * width, -1, dtype=np.int64)
    compact[foreground] = np.arange(n)
    grid = compact.reshape(height, width)
    neighbour_pairs = [(grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])]
    if connectivity == 8:
        neighbour_pairs += [(grid[:-1, :-1], grid[1:, 1:]), (grid[:-1, 1:], grid[1:, :-1])]
    starts, ends = [], []
    for a, b in neighbour_pairs:
        joined = (a >= 0) & (b >= 0)
        starts.append(a[joined])
        ends.append(b[joined])
    u, v = np.concatenate(starts), np.concatenate(ends)
    parent = np.arange(n)
    while True:
        while True:
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                break
            parent = grandparent
        root_u, root_v = parent[u], parent[v]
        crossing = root_u != root_v
        if not crossing.any():
            break
        # Hooking the larger root onto the smaller keeps every parent <= its index: no cycles.
        root_u, root_v = root_u[crossing], root_v[crossing]
        np.minimum.at(parent, np.maximum(root_u, root_v), np.minimum(root_u, root_v))
        u, v = u[crossing], v[crossing]
    # Roots are the smallest compact index of their component, so np.unique numbers them in raster order.
    _, component = np.unique(parent, return_inverse=True)
    labels[foreground] = component + 1
    return labels.reshape(height, width), np.bincount(component).astype(np.int64)


def _bounding_slices(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def remove_small_islands(
    mask: np.ndarray | torch.Tensor, min_area: int, connectivity: int = 8
) -> np.ndarray | torch.Tensor:
    """Drop foreground components smaller than ``min_area`` pixels.

    As in SAM, when every component is small the largest is kept, so this never empties a mask
    (dropping whole masks is the job of the area filter).

    Args:
        mask: (H, W) bool.
        min_area: components with fewer pixels are removed; 0 or 1 keeps everything.
        connectivity: 4 or 8.

    Returns:
        (H, W) bool, of the input's type.
    """
    as_tensor = isinstance(mask, torch.Tensor)
    array = mask.numpy() if as_tensor else np.asarray(mask)
    array = array.astype(bool, copy=True)
    window = _bounding_slices(array)
    if min_area <= 1 or window is None:
        return torch.from_numpy(array) if as_tensor else array
    # Components lie inside the mask's bounding box: labelling only that window is exact and much cheaper.
    crop = array[window]
    labels, areas = label_components(crop, connectivity)
    keep = areas >= min_area
    if not keep.any():
        keep[np.argmax(areas)] = True
    array[window] = np.concatenate([[False], keep])[labels]
    return torch.from_numpy(array) if as_tensor else array


def fill_small_holes(
    mask: np.ndarray | torch.Tensor, max_area: int, connectivity: int = 8
) -> np.ndarray | torch.Tensor:
    """Fill background components enclosed by the mask that have fewer than ``max_area`` pixels.

    Args:
        mask: (H, W) bool.
        max_area: holes with fewer pixels are filled; 0 or 1 fills nothing.
        connectivity: the *foreground* connectivity; holes use the complementary one.

    Returns:
        (H, W) bool, of the input's type.
    """
    as_tensor = isinstance(mask, torch.Tensor)
    array = mask.numpy() if as_tensor else np.asarray(mask)
    array = array.astype(bool, copy=True)
    window = _bounding_slices(array)
    if max_area <= 1 or window is None:
        return torch.from_numpy(array) if as_tensor else array
    # Pad the bounding box with one ring of background: it stands for everything outside the box (and
    # outside the image), so a component touching the ring is not enclosed.
    background = np.pad(~array[window], 1, constant_values=True)
    labels, areas = label_components(background, 4 if connectivity == 8 else 8)
    ring = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    is_hole = areas < max_area
    is_hole[ring[ring > 0] - 1] = False
    filled = np.concatenate([[False], is_hole])[labels][1:-1, 1:-1]
    array[window] |= filled
    return torch.from_numpy(array) if as_tensor else array


@dataclass
class MaskFilter:
    """Clean up and select region masks, in this order: fill holes, remove islands, drop masks that are
    empty, smaller than ``min_area``/``min_area_fraction`` or cover more than ``max_coverage`` of the image,
    then keep the ``top_k`` largest.

    Args:
        min_area: smallest mask kept, in pixels.
        min_area_fraction: smallest mask kept, as a fraction of the image area.
        max_coverage: masks covering more than this fraction of the image are dropped (SAM often returns
            the whole image or its background as one mask; such a region is useless for editing).
        hole_area: holes smaller than this many pixels are filled (0: off).
        island_area: islands smaller than this many pixels are removed (0: off).
        top_k: keep at most this many masks, the largest (None: all).
        connectivity: 4 or 8, for islands (holes use the complementary one).
    """

    min_area: int = 0
    min_area_fraction: float = 0.0
    max_coverage: float = 0.9
    hole_area: int = 0
    island_area: int = 0
    top_k: int | None = None
    connectivity: int = 8

    def __post_init__(self) -> None:
        if self.min_area < 0 or self.hole_area < 0 or self.island_area < 0:
            raise ValueError("MaskFilter: min_area, hole_area and island_area must be >= 0")
        if not 0.0 <= self.min_area_fraction <= 1.0:
            raise ValueError(f"MaskFilter: min_area_fraction must be in [0, 1], got {self.min_area_fraction}")
        if not 0.0 < self.max_coverage <= 1.0:
            raise ValueError(f"MaskFilter: max_coverage must be in (0, 1], got {self.max_coverage}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"MaskFilter: top_k must be >= 0 or None, got {self.top_k}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"MaskFilter: connectivity must be 4 or 8, got {self.connectivity}")

    def __call__(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter a stack of masks.

        Args:
            masks: (N, H, W) bool.

        Returns:
            ``(kept, indices)``: (M, H, W) bool cleaned masks and (M,) long indices into ``masks``, in the
            original order.
        """
        if masks.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
        masks = masks.bool()
        if self.hole_area > 1 or self.island_area > 1:
            cleaned = []
            for mask in masks:
                mask = fill_small_holes(mask, self.hole_area, self.connectivity)
                mask = remove_small_islands(mask, self.island_area, self.connectivity)
                cleaned.append(mask)
            masks = torch.stack(cleaned) if cleaned else masks
        image_area = masks.shape[1] * masks.shape[2]
        areas = masks.flatten(1).sum(dim=1)
        # Fractions are compared with a little slack so that 0.1 of 100 pixels means 10 (0.1 * 100 is
        # 10.000000000000002 in floating point).
        slack = 1e-9 * image_area
        keep = (
            (areas >= max(1, self.min_area))
            & (areas >= self.min_area_fraction * image_area - slack)
            & (areas <= self.max_coverage * image_area + slack)
        )
        indices = torch.nonzero(keep).flatten()
        if self.top_k is not None and indices.numel() > self.top_k:
            # Stable sort so that equal areas keep their original order (reproducible choices).
            order = torch.sort(areas[indices], descending=True, stable=True).indices[: self.top_k]
            indices = indices[order].sort().values
        return masks[indices], indices
