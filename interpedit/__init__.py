"""interpedit: plain-PyTorch components for interpretable, region-level image editing.

Nothing in this package imports Lightning; the Lightning systems live in ``lightning_modules/``,
``datamodules/`` and ``callbacks/`` at the repository root.
"""

__version__ = "0.1.0"
