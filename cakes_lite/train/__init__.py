"""Training on small subsets: ``fit`` / ``evaluate``, metrics, checkpoints, DDP helpers.

Walkthrough: ``notebooks/03_video_training.ipynb``.
"""

from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint_info, save_checkpoint
from .distributed import DistInfo, cleanup, init_distributed, is_distributed, is_main
from .epoch import StepContext, loader_generators, train_one_epoch, train_step
from .loop import (
                   FitResult,
                   NonFiniteLossError,
                   default_param_groups,
                   evaluate,
                   fit,
                   make_optimizer,
                   seed_epoch,
)
from .metrics import (dice_counts, dice_from_counts, dice_per_class, label_counts, mean_foreground,
                      soft_dice_loss, top1_correct)
from .schedule import warmup_cosine
from .sliding import predict_volume, sliding_window_evaluate

__all__ = ["Checkpoint", "DistInfo", "FitResult", "NonFiniteLossError", "StepContext", "cleanup",
           "default_param_groups", "dice_counts", "dice_from_counts", "dice_per_class", "evaluate",
           "fit", "init_distributed", "is_distributed", "is_main", "label_counts",
           "load_checkpoint", "loader_generators", "make_optimizer", "mean_foreground",
           "predict_volume", "sliding_window_evaluate",
           "read_checkpoint_info", "save_checkpoint", "seed_epoch", "soft_dice_loss",
           "top1_correct", "train_one_epoch", "train_step", "warmup_cosine"]
