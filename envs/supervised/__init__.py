"""Supervised meta-learning task families returning ``TaskBatch`` tensors on a requested device."""

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
from envs.supervised.sinusoid import SinusoidFamily
from envs.supervised.task_batch import TaskBatch

__all__ = [
    "ARCHIVE_NAMES",
    "IMAGE_SIZE",
    "NUM_CHARACTERS",
    "NUM_DRAWERS",
    "PROTOCOLS",
    "ROOT_ENV_VAR",
    "SPLITS",
    "SPLIT_SEED",
    "SPLIT_SIZES",
    "OmniglotData",
    "OmniglotDataError",
    "OmniglotFamily",
    "SinusoidFamily",
    "TaskBatch",
    "default_omniglot_cache_dir",
    "load_omniglot",
    "omniglot_split_characters",
    "resolve_omniglot_root",
]
