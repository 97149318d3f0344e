"""Editing methods behind one interface: ``method(batch) -> {"edited", "edit_region"?}``."""

from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.editing.identity import IdentityEdit
from interpedit.editing.oracle import OracleEdit
from interpedit.editing.region_autoencoder_edit import RegionAutoencoderEdit

__all__ = ["EditOutput", "EditingMethod", "IdentityEdit", "OracleEdit", "RegionAutoencoderEdit"]
