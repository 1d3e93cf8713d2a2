"""Training on small subsets: ``fit`` / ``evaluate``, metrics, checkpoints, DDP helpers; the
video papers' optimiser pieces (step schedule with warm-up, BN/bias parameter groups,
multi-view evaluation) and whole-volume sliding-window evaluation.

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
                      soft_dice_loss, top1_correct, topk_correct)
from .optim import bn_bias_param_groups
from .schedule import MultiStepWarmup, linear_scaled_lr, warmup_cosine
from .sliding import predict_volume, sliding_window_evaluate
from .views import ViewAverage, evaluate_views

__all__ = ["Checkpoint", "DistInfo", "FitResult", "MultiStepWarmup", "NonFiniteLossError",
           "StepContext", "ViewAverage", "bn_bias_param_groups", "cleanup",
           "default_param_groups", "dice_counts", "dice_from_counts", "dice_per_class", "evaluate",
           "evaluate_views", "fit", "init_distributed", "is_distributed", "is_main",
           "label_counts", "linear_scaled_lr", "load_checkpoint", "loader_generators",
           "make_optimizer", "mean_foreground", "predict_volume", "read_checkpoint_info",
           "save_checkpoint", "seed_epoch", "sliding_window_evaluate", "soft_dice_loss",
           "top1_correct", "topk_correct", "train_one_epoch", "train_step", "warmup_cosine"]
