"""Shared pytest configuration: no network, deterministic CPU runs."""

import os

# Tests never touch a model hub: every pretrained part is built tiny and loaded from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
