"""Supervised meta-learning task families returning ``TaskBatch`` tensors on a requested device."""

from envs.supervised.miniimagenet import (
    MINIIMAGENET_ROOT_ENV_VAR,
    MiniImageNetDataError,
    MiniImageNetFamily,
    load_miniimagenet_split,
    read_split_csv,
    resolve_miniimagenet_root,
)
from envs.supervised.omniglot import (
    PROTOCOLS,
    SPLIT_SEED,
    SPLIT_SIZES,
    SPLITS,
    OmniglotFamily,
    omniglot_split_characters,
)
from envs.supervised.omniglot_data import (
    ARCHIVE_NAMES,
    IMAGE_SIZE,
    NUM_CHARACTERS,
    NUM_DRAWERS,
    ROOT_ENV_VAR,
    OmniglotData,
    OmniglotDataError,
    default_omniglot_cache_dir,
    load_omniglot,
    resolve_omniglot_root,
)
from envs.supervised.omniglot_splits import vinyals_classes
from envs.supervised.sinusoid import SinusoidFamily
from envs.supervised.task_batch import TaskBatch

__all__ = [
    "ARCHIVE_NAMES",
    "IMAGE_SIZE",
    "MINIIMAGENET_ROOT_ENV_VAR",
    "NUM_CHARACTERS",
    "NUM_DRAWERS",
    "PROTOCOLS",
    "ROOT_ENV_VAR",
    "SPLITS",
    "SPLIT_SEED",
    "SPLIT_SIZES",
    "MiniImageNetDataError",
    "MiniImageNetFamily",
    "OmniglotData",
    "OmniglotDataError",
    "OmniglotFamily",
    "SinusoidFamily",
    "TaskBatch",
    "default_omniglot_cache_dir",
    "load_miniimagenet_split",
    "load_omniglot",
    "omniglot_split_characters",
    "read_split_csv",
    "resolve_miniimagenet_root",
    "resolve_omniglot_root",
    "vinyals_classes",
]
