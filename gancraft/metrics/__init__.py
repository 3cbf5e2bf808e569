"""FID, KID and FD with other feature extractors, computed from streamed feature batches."""

from .features import (
    ClipExtractor,
    FeatureExtractor,
    InceptionExtractor,
    TorchScriptExtractor,
    features_from_batches,
    features_from_folder,
    iter_folder_batches,
    load_extractor,
)
from .fid import (
    FeatureStats,
    RunningStats,
    fid_from_stats,
    frechet_distance,
    kernel_inception_distance,
    load_stats,
    mmd2_unbiased,
    save_stats,
    stats_from_features,
)

__all__ = [
    "ClipExtractor",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionExtractor",
    "RunningStats",
    "TorchScriptExtractor",
    "features_from_batches",
    "features_from_folder",
    "fid_from_stats",
    "frechet_distance",
    "iter_folder_batches",
    "kernel_inception_distance",
    "load_extractor",
    "load_stats",
    "mmd2_unbiased",
    "save_stats",
    "stats_from_features",
]
