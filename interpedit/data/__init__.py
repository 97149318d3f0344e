"""Data components shared by every DataModule.

Batch convention (all DataModules produce dicts with these keys; ``K`` is the region budget):

- ``image``: (B, 3, H, W) float32 in [0, 1].
- ``masks``: (B, K, H, W) bool, one region per slot, padded with empty masks.
- ``region_valid``: (B, K) bool, True where the slot holds a region.
- ``boxes``: (B, K, 4) float32, ``x0, y0, x1, y1`` in pixels (exclusive end), zeros where invalid.

Paired (unpaired-training) views add ``source_`` and ``target_`` versions of the four keys above;
slot ``k`` refers to the same original region in both views, and ``*_region_valid`` is False where the
region was cropped out of that view.
"""
