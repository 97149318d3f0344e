"""Editing methods behind one interface: ``method(batch) -> {"edited", "edit_region"?}``."""

from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.editing.identity import IdentityEdit
from interpedit.editing.oracle import OracleEdit

__all__ = ["EditOutput", "EditingMethod", "IdentityEdit", "OracleEdit"]
