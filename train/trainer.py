"""Training FDRL on cached features (the public entry points; each concern lives in its own module).

A run directory holds everything about one model:

    state.pt                training state (model, optimizer, scheduler, RNG, epoch/step, early stopping);
                            written atomically every `save_every` steps and at each epoch end, so the same
                            command after a crash resumes and ends with the same weights as an uninterrupted run
    train.log, history.json per-epoch losses (per component and modality) and validation scores
    metrics.json            val and test metrics of the selected (best validation UA) epoch, with calibration
    predictions_{val,test}.jsonl, confusion_{val,test}.png, reliability_{val,test}.png, curves.png
    model/                  the checkpoint (fdrl_core.checkpoint) with meta.json

Modules: settings (TrainConfig, --set overrides), distributed (torchrun), splits (validation, LOSO), state
(resume), loop (one run), evaluation (outputs of a run), experiments (runs and LOSO summaries).
"""

from train.distributed import DistContext, init_distributed
from train.evaluation import git_commit, predict
from train.experiments import run_experiment, summarize_folds, summary_markdown
from train.loop import RunContext, train_run
from train.settings import QUICK_MODEL, QUICK_TRAIN, TrainConfig, apply_overrides
from train.splits import VAL_SPLITS, Splits, carve_validation, corpus_splits, fold_splits
from train.state import CRASH_ENV, STATE, SimulatedCrash, seed_all

_SimulatedCrash = SimulatedCrash  # the name the resume tests use

__all__ = ["CRASH_ENV", "QUICK_MODEL", "QUICK_TRAIN", "STATE", "VAL_SPLITS", "DistContext", "RunContext",
           "SimulatedCrash", "Splits", "TrainConfig", "apply_overrides", "carve_validation", "corpus_splits",
           "fold_splits", "git_commit", "init_distributed", "predict", "run_experiment", "seed_all",
           "summarize_folds", "summary_markdown", "train_run"]
