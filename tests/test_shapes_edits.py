"""Edits of shapes-world scenes: the changed-pixel mask, exactness of each edit type, prompts and instructions."""

import json
import math

import numpy as np
import pytest

from interpedit.shapes import (
    EDIT_TYPE_IDS,
    EDIT_TYPES,
    PALETTE,
    Background,
    EditNotPossible,
    Scene,
    SceneConfig,
    ShapeObject,
    add,
    apply_edit,
    move,
    recolour,
    remove,
    render,
    reshape,
    resize,
    rotate,
    sample_scene,
    strip_brackets,
    swap,
    vocabulary,
)

GREY = Background(kind="solid", colours=((120, 118, 125),))
RED_CIRCLE = ShapeObject("circle", "red", 0.07, (0.2, 0.2))
BLUE_SQUARE = ShapeObject("square", "blue", 0.16, (0.5, 0.78), rotation=0.2)
YELLOW_STAR = ShapeObject("star", "yellow", 0.11, (0.5517578125, 0.5), rotation=1.0)  # x = 565 / 1024
HAND_MADE = Scene(GREY, (RED_CIRCLE, BLUE_SQUARE, YELLOW_STAR))


def drawn_edits(count, resolution=32):
    """``count`` drawn edits of every type, over scenes of two to four objects."""
    config = SceneConfig(min_objects=2, max_objects=4)
    for edit_type in EDIT_TYPES:
        made = 0
        for index in range(10 * count):
            rng = np.random.default_rng(np.random.SeedSequence([11, int(EDIT_TYPE_IDS[edit_type]), index]))
            scene = sample_scene(rng, config)
            try:
                yield apply_edit(edit_type, scene, rng=rng, resolution=resolution)
            except EditNotPossible:
                continue
            made += 1
            if made == count:
                break
        assert made == count, f"{edit_type}: only {made} drawn edits"


def alone_footprint(scene, index, resolution):
    """Where object ``index`` would show with nothing else in the scene (an independent bound)."""
    obj = scene.objects[index]
    return render(Scene(scene.background, (obj,)), resolution).coverage[0] > 0


def test_changed_mask_covers_every_changed_pixel_and_only_edited_objects():
    for edit in drawn_edits(12):
        differs = (edit.source.image != edit.target.image).any(axis=-1)
        assert differs.any(), edit.instruction
        assert not (differs & ~edit.changed_mask).any(), edit.instruction
        bound = np.zeros_like(edit.changed_mask)
        for index in edit.source_indices:
            bound |= alone_footprint(edit.source_scene, index, 32)
        for index in edit.target_indices:
            bound |= alone_footprint(edit.target_scene, index, 32)
        assert not (edit.changed_mask & ~bound).any(), edit.instruction
        # Objects that were not edited keep their exact label masks wherever no edited object is visible.
        outside = ~edit.changed_mask
        np.testing.assert_array_equal((edit.source.labels == 0) & outside, (edit.target.labels == 0) & outside)


def test_drawn_edits_replay_exactly_from_their_json_parameters():
    for edit in drawn_edits(3):
        params = json.loads(json.dumps(edit.params))
        if edit.edit_type == "add":
            params["new_object"] = ShapeObject.from_dict(params["new_object"])
        if edit.edit_type == "swap":
            params["first"], params["second"] = params.pop("objects")
        else:
            params = {{"object": "index"}.get(key, key): value for key, value in params.items()}
        if edit.edit_type == "move":
            params["position"] = tuple(params["position"])
        replay = apply_edit(edit.edit_type, edit.source_scene, **params)
        assert replay.target_scene == edit.target_scene
        np.testing.assert_array_equal(replay.target.image, edit.target.image)
        np.testing.assert_array_equal(replay.changed_mask, edit.changed_mask)
        assert replay.instruction == edit.instruction


def test_prompts_bracket_changed_words_and_strip_to_captions():
    words = set(vocabulary())
    seen_types = set()
    for edit in drawn_edits(60, resolution=16):
        seen_types.add(edit.edit_type)
        assert strip_brackets(edit.source_prompt) == edit.source_caption
        assert strip_brackets(edit.target_prompt) == edit.target_caption
        for text in (edit.instruction, edit.source_caption, edit.target_caption, edit.blended_word):
            tokens = [t for t in text.lower().split(" ") if t]
            assert set(tokens) <= words, (text, set(tokens) - words)
        if edit.edit_type in ("recolour", "reshape"):
            source_word, target_word = edit.blended_word.split(" ")
            assert f"[{source_word}]" in edit.source_prompt and f"[{target_word}]" in edit.target_prompt
    assert seen_types == set(EDIT_TYPES)


def test_whole_pixel_move_on_a_solid_background_shifts_identical_pixels():
    for resolution in (32, 64):
        shift = (2, -1)
        x, y = YELLOW_STAR.position
        new_position = (x + shift[0] / resolution, y + shift[1] / resolution)
        edit = move(Scene(GREY, (YELLOW_STAR,)), 0, new_position, resolution=resolution)
        footprint = edit.source.footprints[0]
        rows, cols = np.nonzero(footprint)
        np.testing.assert_array_equal(
            edit.target.image[rows + shift[1], cols + shift[0]], edit.source.image[rows, cols]
        )
        np.testing.assert_array_equal(np.roll(footprint, (shift[1], shift[0]), axis=(0, 1)), edit.target.footprints[0])
        assert edit.instruction == "move the star a little to the right"


def test_recolour_keeps_the_label_map_and_changes_only_colour():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        edit = recolour(sample_scene(rng), rng=rng)
        np.testing.assert_array_equal(edit.source.labels, edit.target.labels)
        np.testing.assert_array_equal(edit.source.coverage, edit.target.coverage)
        (index,) = edit.source_indices
        interior = edit.target.coverage[index] == 1.0
        assert (edit.target.image[interior] == PALETTE[edit.params["colour"]]).all()


def test_remove_reveals_exactly_the_background():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        edit = remove(sample_scene(rng, SceneConfig(min_objects=2, max_objects=4)), rng=rng)
        (index,) = edit.source_indices
        revealed = edit.source.footprints[index] & (edit.target.coverage.sum(axis=0) == 0)
        assert revealed.any()
        np.testing.assert_array_equal(edit.target.image[revealed], edit.source.background[revealed])
        assert (edit.target.labels[revealed] == 0).all()
        assert len(edit.target_scene.objects) == len(edit.source_scene.objects) - 1


def test_hand_made_edits_have_exact_instructions_prompts_and_attributes():
    edit = move(HAND_MADE, 0, (0.8, 0.2))
    assert edit.instruction == "move the circle to the top right"
    assert edit.source_prompt.startswith("a small red circle at the [top left] and")
    assert edit.target_prompt.startswith("a small red circle at the [top right] and")
    assert edit.blended_word == "circle circle"

    edit = recolour(HAND_MADE, 1, "green")
    assert edit.instruction == "make the square green"
    assert "a large [blue] square at the bottom" in edit.source_prompt
    assert "a large [green] square at the bottom" in edit.target_prompt
    assert edit.blended_word == "blue green" and edit.type_id == "6"

    edit = resize(HAND_MADE, 0, size="large")
    assert edit.instruction == "make the circle large" and edit.blended_word == "small large"
    assert edit.target_scene.objects[0].size == "large"

    edit = reshape(HAND_MADE, 2, "hexagon")
    assert edit.instruction == "turn the star into a hexagon" and edit.blended_word == "star hexagon"
    assert edit.target_scene.objects[2].rotation == YELLOW_STAR.rotation

    edit = rotate(HAND_MADE, 1, -30)
    assert edit.instruction == "rotate the square 30 degrees counterclockwise"
    assert edit.source_prompt == edit.target_prompt == edit.source_caption
    assert math.isclose(edit.target_scene.objects[1].rotation, 0.2 - math.radians(30) + 2 * math.pi)

    edit = remove(HAND_MADE, 2)
    assert edit.instruction == "remove the star" and edit.target_indices == ()
    assert edit.source_prompt.endswith("and [a medium yellow star at the center]")
    assert edit.target_caption == "a small red circle at the top left and a large blue square at the bottom"

    green_triangle = ShapeObject("triangle", "green", 0.07, (0.8, 0.8))
    edit = add(HAND_MADE, green_triangle, 1)
    assert edit.instruction == "add a small green triangle at the bottom right"
    assert edit.target_scene.objects[1] == green_triangle and edit.target_indices == (1,)
    assert "and [a small green triangle at the bottom right] and" in edit.target_prompt

    edit = swap(HAND_MADE, 0, 1)
    assert edit.instruction == "swap the colours and shapes of the circle and the square"
    first, second = edit.target_scene.objects[:2]
    assert (first.shape, first.colour, first.position) == ("square", "blue", RED_CIRCLE.position)
    assert (second.shape, second.colour, second.radius) == ("circle", "red", BLUE_SQUARE.radius)
    assert "a small [blue] [square] at the top left" in edit.target_prompt


def test_referring_expressions_add_attributes_until_unique():
    blue_circle = ShapeObject("circle", "blue", 0.07, (0.8, 0.8))
    big_red_circle = ShapeObject("circle", "red", 0.16, (0.5, 0.5))
    twins = Scene(GREY, (RED_CIRCLE, blue_circle, big_red_circle))
    assert remove(twins, 1).instruction == "remove the blue circle"
    assert remove(twins, 0).instruction == "remove the small red circle"


def test_bad_edit_parameters_are_rejected():
    with pytest.raises(ValueError, match="recolour: unknown colour 'pink'"):
        recolour(HAND_MADE, 0, "pink")
    with pytest.raises(ValueError, match="already red"):
        recolour(HAND_MADE, 0, "red")
    with pytest.raises(ValueError, match="object index 7 is outside the scene's 3 objects"):
        remove(HAND_MADE, 7)
    with pytest.raises(ValueError, match="circle, which no rotation changes"):
        rotate(HAND_MADE, 0, 45)
    with pytest.raises(ValueError, match="multiple of 15"):
        rotate(HAND_MADE, 1, 40)
    with pytest.raises(ValueError, match="give either all of the edit's parameters or an rng"):
        move(HAND_MADE, 0)
    with pytest.raises(ValueError, match="unknown edit type 'fly'"):
        apply_edit("fly", HAND_MADE)
    with pytest.raises(EditNotPossible):
        remove(Scene(GREY, (RED_CIRCLE,)), rng=np.random.default_rng(0))
    with pytest.raises(EditNotPossible):
        rotate(Scene(GREY, (RED_CIRCLE,)), rng=np.random.default_rng(0))
