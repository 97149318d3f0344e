"""User errors end every command with one ``error:`` block naming the file, id or option, and no traceback;
programming errors keep theirs, and ``--traceback`` / ``INTERPEDIT_TRACEBACK=1`` bring it back for user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interpedit.data.image_io import DataFileError
from interpedit.user_errors import (
    EXIT_USER_ERROR,
    TRACEBACK_ENV,
    OptionError,
    find_user_error,
    format_user_error,
    run_command,
)

REPO = Path(__file__).resolve().parents[1]


def _fails_with(main, argv, capsys) -> list[str]:
    """Run ``main`` through ``run_command``; return the stderr lines of the user error it must stop with."""
    with pytest.raises(SystemExit) as stopped:
        run_command(main, argv)
    assert stopped.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------- the wrapper
def test_user_error_prints_one_block_and_exits_2(capsys):
    def main(argv):
        raise OptionError("--steps: must be positive, got -1")

    assert _fails_with(main, [], capsys) == ["error: --steps: must be positive, got -1"]


def test_user_error_wrapped_by_a_library_is_found(capsys):
    # jsonargparse re-raises a class that failed to build as a ValueError ``from`` the original, possibly nested.
    def main(argv):
        try:
            try:
                raise DataFileError("bench/mapping_file.json", "entry '3': missing key 'editing_prompt'")
            except DataFileError as inner:
                raise ValueError("Does not validate against any of the Union subtypes\n...") from inner
        except ValueError as outer:
            raise TypeError("wrapped again") from outer

    assert _fails_with(main, [], capsys) == ["error: bench/mapping_file.json: entry '3': missing key 'editing_prompt'"]


def test_programming_errors_keep_their_traceback():
    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_command(main, [])


def test_traceback_flag_and_environment_variable_reraise(monkeypatch):
    seen = []

    def main(argv):
        seen.append(argv)
        raise OptionError("--x: bad")

    with pytest.raises(OptionError):
        run_command(main, ["--traceback", "--y", "1"])
    assert seen[-1] == ["--y", "1"]  # the flag is not passed on
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(OptionError):
        run_command(main, [])


def test_multi_line_messages_are_indented_under_the_first():
    error = OptionError("id: cannot load it\nTo provide it: download it\n")
    assert format_user_error(error) == "error: id: cannot load it\n  To provide it: download it"
    assert find_user_error(RuntimeError("unrelated")) is None


# ---------------------------------------------------------------- each command with one bad input of its own
def test_datamodules_sam_masks_missing_images_folder_fails_before_loading_sam(tmp_path, capsys):
    from datamodules.sam_masks import main

    lines = _fails_with(main, ["--images", str(tmp_path / "none"), "--out", str(tmp_path / "out"),
                               "--model", str(tmp_path / "no_sam")], capsys)
    assert lines == [f"error: --images: no such directory: {tmp_path / 'none'}"]
    assert not (tmp_path / "out").exists()


def test_datamodules_shapes_export_bad_edit_type_names_the_option(tmp_path, capsys):
    from datamodules.shapes import main

    with pytest.raises(SystemExit) as stopped:
        run_command(main, ["export", "--out", str(tmp_path / "b"), "--num-scenes", "2", "--seed", "0",
                           "--edits", "move,fly"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("error: edits: fly not valid; choose from "
                                         "move, resize, recolour, reshape, rotate, remove, add, swap")
    assert "Traceback" not in err and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "module, argv",
    [
        ("lightning_modules.region_autoencoder", ["export", "--ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/model"]),
        ("lightning_modules.autoencoder_kl", ["export", "--ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/vae"]),
        ("lightning_modules.stable_diffusion", ["export", "--ckpt", "{tmp}/none.ckpt", "--out", "{tmp}/sd"]),
    ],
)
def test_export_commands_name_the_missing_checkpoint(module, argv, tmp_path, capsys):
    import importlib

    main = importlib.import_module(module).main
    lines = _fails_with(main, [arg.format(tmp=tmp_path) for arg in argv], capsys)
    assert lines == [f"error: {tmp_path}/none.ckpt: no such checkpoint file (--ckpt)"]


def test_region_autoencoder_grid_names_the_missing_model(tmp_path, capsys):
    from lightning_modules.region_autoencoder import main

    lines = _fails_with(main, ["grid", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "g.png")], capsys)
    assert lines[0].startswith(f"error: {tmp_path / 'none'}")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("command", ["grid", "evaluate"])
def test_stable_diffusion_commands_name_the_missing_pipeline(command, tmp_path, capsys):
    from lightning_modules.stable_diffusion import main

    model = tmp_path / "no_pipeline"
    extra = ["--out", str(tmp_path / "g.png")] if command == "grid" else ["--num-prompts", "16", "--seed", "1"]
    lines = _fails_with(main, [command, "--model", str(model), *extra], capsys)
    assert lines[0].startswith(f"error: {model}: cannot load ")
    assert lines[1].startswith("  To provide it:")


def test_stable_diffusion_components_names_the_missing_vae(tmp_path, capsys):
    from lightning_modules.stable_diffusion import main

    lines = _fails_with(main, ["components", "--vae", str(tmp_path / "no_vae"), "--out", str(tmp_path / "c")], capsys)
    assert lines[0].startswith(f"error: {tmp_path / 'no_vae'}: cannot load AutoencoderKL")
    assert not (tmp_path / "c").exists()


def test_ground_truth_table_names_the_run_without_results(tmp_path, capsys):
    from interpedit.evaluation.ground_truth_table import main

    lines = _fails_with(main, [str(tmp_path)], capsys)
    assert lines[0].startswith(f"error: {tmp_path}")


def test_shapes_labels_rejects_an_empty_sample(capsys):
    from interpedit.hspace.shapes_labels import main

    assert _fails_with(main, ["--num-scenes", "0"], capsys) == ["error: --num-scenes: must be at least 1, got 0"]


def test_demo_summary_names_the_missing_table(tmp_path, capsys):
    from interpedit.evaluation.demo_summary import main

    lines = _fails_with(main, ["--table", str(tmp_path / "none.md")], capsys)
    assert lines == [f"error: {tmp_path / 'none.md'}: no such ground-truth table (--table)"]


# ------------------------------------------------------------- the real entry points, as a user runs them
def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != TRACEBACK_ENV}
    environment.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=environment)


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def broken_benchmark(tmp_path_factory) -> Path:
    from interpedit.shapes.export import export_benchmark
    from interpedit.shapes.scene import SceneConfig

    root = tmp_path_factory.mktemp("broken_bench")
    export_benchmark(root, 2, seed=0, resolution=32, edits=("recolour",), config=SceneConfig())
    mapping = json.loads((root / "mapping_file.json").read_text())
    first = sorted(mapping)[0]
    del mapping[first]["editing_prompt"]
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    return root


def test_eval_py_broken_benchmark_file_is_one_error_line(broken_benchmark):
    result = _run("eval.py", "--config", "configs/eval/shapes/identity.yaml", "--data.root", str(broken_benchmark),
                  "--trainer.default_root_dir", str(broken_benchmark / "out"))
    errors = _error_lines(result)
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken_benchmark / 'mapping_file.json'}: entry ")
    assert errors[0].endswith("missing key 'editing_prompt'")
    # The flag brings the traceback back.
    again = _run("eval.py", "--config", "configs/eval/shapes/identity.yaml", "--data.root", str(broken_benchmark),
                 "--trainer.default_root_dir", str(broken_benchmark / "out"), "--traceback")
    assert again.returncode != 0 and "Traceback" in again.stderr and "BenchmarkError" in again.stderr


def test_eval_py_missing_weights_are_the_last_thing_printed(tmp_path, broken_benchmark):
    missing = tmp_path / "no_sd"
    result = _run("eval.py", "--config", "configs/eval/shapes/diffedit.yaml", "--data.root", str(broken_benchmark),
                  "--model.init_args.method.init_args.pipeline", str(missing))
    errors = _error_lines(result)
    assert errors == [f"error: {missing}: cannot load AutoencoderKL (subfolder 'vae'): no such file or directory: "
                      f"{missing.resolve()}."]
    # The error block ends the output: only its own indented lines (how to provide the weights) follow it.
    lines = result.stderr.strip().splitlines()
    after = lines[lines.index(errors[0]) + 1:]
    assert after and all(line.startswith("  ") for line in after) and "To provide it" in after[0]
    assert "Does not validate against any of the Union subtypes" not in result.stderr


def test_train_py_missing_init_checkpoint_names_it(tmp_path):
    result = _run("train.py", "fit", "--config", "configs/shapes/region_autoencoder.yaml",
                  "--model.init_args.init_from", str(tmp_path / "none.ckpt"),
                  "--trainer.default_root_dir", str(tmp_path / "run"))
    errors = _error_lines(result)
    assert errors == [f"error: RegionAutoencoderModule.init_from: no checkpoint at {tmp_path / 'none.ckpt'}"]
    assert not (tmp_path / "run").exists()


def test_python_dash_m_entry_point_uses_the_wrapper(tmp_path):
    result = _run("-m", "datamodules.check", str(tmp_path / "nowhere"))
    assert _error_lines(result) == [f"error: {tmp_path / 'nowhere'}: dataset folder does not exist"]
    result = _run("-m", "datamodules.check", str(tmp_path / "nowhere"), env={TRACEBACK_ENV: "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_every_command_line_runs_through_the_wrapper():
    # The entry points this repository documents; each must end in run_command so user errors read as one line.
    entry_points = [
        "train.py", "eval.py", "datamodules/check.py", "datamodules/shapes.py", "datamodules/sam_masks.py",
        "lightning_modules/region_autoencoder.py", "lightning_modules/autoencoder_kl.py",
        "lightning_modules/stable_diffusion.py", "interpedit/evaluation/ground_truth_table.py",
        "interpedit/hspace/shapes_labels.py", "interpedit/evaluation/demo_summary.py",
    ]
    for path in entry_points:
        text = (REPO / path).read_text()
        main_block = text[text.index('if __name__ == "__main__":'):]
        assert "run_command(" in main_block, path
