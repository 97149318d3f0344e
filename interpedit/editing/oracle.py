"""The ``oracle`` reference method: returns the true target of a benchmark with ground truth (shapes world)."""

from typing import Any

from interpedit.editing.editing_method import EditingMethod, EditOutput


class OracleEdit(EditingMethod):
    """Returns the exact edited render and the true changed region: every ground-truth metric is ideal."""

    name = "oracle"

    def forward(self, batch: dict[str, Any]) -> EditOutput:
        if not bool(batch["has_target"].all()):
            missing = [i for i, has in zip(batch["image_id"], batch["has_target"].tolist()) if not has]
            raise ValueError(
                f"the oracle needs ground-truth targets, but samples {missing[:5]} have none; "
                "use it on a shapes benchmark (python -m datamodules.shapes export)"
            )
        return {"edited": batch["target_image"].clone(), "edit_region": batch["edit_mask"].clone()}
