# interpedit: `make demo` and `make test` each work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision come from the package registry's standard builds (they run on CPU as well as
# CUDA). Local wheel folders and pip config files are ignored for these two so that both come from the
# same build: a CPU-only torch next to the registry's torchvision fails to load torchvision's operators.
TORCH_SPEC ?= torch==2.13.0 torchvision==0.28.0
REGISTRY_PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(BIN)/pip

.PHONY: help install demo test test-slow test-all clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(REGISTRY_PIP) install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install interpedit with its test dependencies

# The demo: a region autoencoder trained briefly on the shapes world (500 steps: about 12 min on 2 CPU cores;
# 32.8 min for the whole demo on a fresh clone, text methods included), then, on one freshly exported benchmark, the ground-truth metrics of that model, of the committed one and
# of the identity and oracle references, with both models' edit grids and a closing summary. Once the shapes Stable
# Diffusion pipeline is committed, DiffEdit, DDIM inversion and Guide-and-Rescale (and Learnable Regions, with the
# inpainting pipeline) are measured too, on a 64 px recolour/reshape benchmark of their own, in a second table.
DEMO ?= runs/demo
DEMO_STEPS ?= 500
DEMO_SCENES ?= 96
DEMO_EDITS := move,resize,remove,swap
COMMITTED_RAE ?= pretrained/shapes_region_autoencoder
COMMITTED_SD ?= pretrained/shapes_stable_diffusion
COMMITTED_SD_INPAINTING ?= pretrained/shapes_stable_diffusion_inpainting
# The text-driven methods run on a 64 px recolour/reshape benchmark of their own, once the committed shapes pipeline
# is there (Learnable Regions once the inpainting one is too).
SD_READY := $(wildcard $(COMMITTED_SD)/model_index.json)
INPAINTING_READY := $(wildcard $(COMMITTED_SD_INPAINTING)/model_index.json)
DEMO_TEXT_SCENES ?= 32
DEMO_SD_METHODS := diffedit ddim_inversion guide_and_rescale $(if $(INPAINTING_READY),learnable_regions)
DEMO_TEXT_RUNS := $(DEMO_SD_METHODS) identity oracle

demo: install  ## train the region autoencoder briefly; compare it with the committed models on a fresh benchmark
	rm -rf $(DEMO)  # a fresh run each time: an old last.ckpt must not be the one exported
	$(BIN)/python train.py fit --config configs/shapes/region_autoencoder.yaml \
		--trainer.max_steps $(DEMO_STEPS) --trainer.default_root_dir $(DEMO)/train
	$(BIN)/python -m lightning_modules.region_autoencoder export \
		--ckpt $(DEMO)/train/checkpoints/last.ckpt --out $(DEMO)/model --dtype float16
	$(BIN)/python -m lightning_modules.region_autoencoder grid --model $(DEMO)/model --out $(DEMO)/edit_grid.png --cfg-scale 1.5
	$(BIN)/python -m lightning_modules.region_autoencoder grid --model $(COMMITTED_RAE) \
		--out $(DEMO)/committed_edit_grid.png --cfg-scale 1.5
	$(BIN)/python -m datamodules.shapes export --out $(DEMO)/bench --num-scenes $(DEMO_SCENES) --seed 2026 \
		--edits $(DEMO_EDITS) --backgrounds solid,gradient
	$(BIN)/python eval.py --config configs/eval/shapes/region_autoencoder.yaml --data.root $(DEMO)/bench \
		--model.init_args.method.init_args.model $(DEMO)/model --trainer.default_root_dir $(DEMO)/eval/region_autoencoder \
		--trainer.enable_progress_bar false
	$(BIN)/python eval.py --config configs/eval/shapes/region_autoencoder.yaml --data.root $(DEMO)/bench \
		--model.init_args.method.init_args.model $(COMMITTED_RAE) \
		--trainer.default_root_dir $(DEMO)/eval/committed_region_autoencoder --trainer.enable_progress_bar false
	for method in identity oracle; do \
		$(BIN)/python eval.py --config configs/eval/shapes/$$method.yaml --data.root $(DEMO)/bench \
			--trainer.default_root_dir $(DEMO)/eval/$$method --trainer.enable_progress_bar false || exit 1; \
	done
	$(BIN)/python -m interpedit.evaluation.ground_truth_table \
		"region autoencoder, this demo ($(DEMO_STEPS) steps)=$(DEMO)/eval/region_autoencoder" \
		"region autoencoder, committed=$(DEMO)/eval/committed_region_autoencoder" \
		identity=$(DEMO)/eval/identity oracle=$(DEMO)/eval/oracle --out $(DEMO)/ground_truth.md
ifneq ($(SD_READY),)
	$(BIN)/python -m datamodules.shapes export --out $(DEMO)/text_bench --num-scenes $(DEMO_TEXT_SCENES) --seed 2026 \
		--resolution 64 --edits recolour,reshape --backgrounds solid,gradient
	for method in $(DEMO_TEXT_RUNS); do \
		$(BIN)/python eval.py --config configs/eval/shapes/$$method.yaml --data.root $(DEMO)/text_bench \
			--trainer.default_root_dir $(DEMO)/eval_text/$$method --trainer.enable_progress_bar false || exit 1; \
	done
	$(BIN)/python -m interpedit.evaluation.ground_truth_table --columns text \
		$(foreach run,$(DEMO_TEXT_RUNS),$(run)=$(DEMO)/eval_text/$(run)) --out $(DEMO)/text_edits.md
endif
	$(BIN)/python -m interpedit.evaluation.demo_summary --table $(DEMO)/ground_truth.md \
		--entry "region autoencoder trained by this demo ($(DEMO_STEPS) steps)" $(DEMO)/eval/region_autoencoder $(DEMO)/edit_grid.png \
		--entry "committed region autoencoder ($(COMMITTED_RAE))" $(DEMO)/eval/committed_region_autoencoder \
			$(DEMO)/committed_edit_grid.png \
		--entry "identity (the source unchanged; a floor)" $(DEMO)/eval/identity - \
		--entry "oracle (the true target; a ceiling)" $(DEMO)/eval/oracle - \
		$(if $(SD_READY),--text-table $(DEMO)/text_edits.md \
			$(foreach run,$(DEMO_TEXT_RUNS),--text-entry "$(run) (text edits)" $(DEMO)/eval_text/$(run) \
				$(DEMO)/eval_text/$(run)/lightning_logs/version_0/test_grid_0.png)) \
		--skipped "$(if $(SD_READY),h-space directions: they need a direction-discovery fit first \
			(docs/hspace_directions.md),shapes Stable Diffusion methods (DiffEdit, Learnable Regions, h-space, \
			Guide-and-Rescale): $(COMMITTED_SD) is not committed yet (issue 13))" \
		$(if $(SD_READY),$(if $(INPAINTING_READY),,--skipped "Learnable Regions: $(COMMITTED_SD_INPAINTING) is not \
			committed yet"))

test: install  ## run the default test suite (no network, < 10 min on 2 cores)
	$(BIN)/python -m pytest

test-slow: install  ## run the slow tests (DDP, SIGKILL resume, training to quality)
	$(BIN)/python -m pytest -m slow

test-all: install  ## run every test
	$(BIN)/python -m pytest -m "slow or not slow"

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) lightning_logs runs demo_output .pytest_cache
