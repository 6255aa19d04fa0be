"""Dataset readers for the real on-disk formats, all returning the same sample dict (see base.DepthDataset)."""
from __future__ import annotations

from torch.utils.data import Dataset

from training.datasets.base import (
    SPLITS, DatasetError, DepthDataset, RawSample, chunk_indices, holdout_split, worker_init,
)
from training.datasets.cityscapes import CityscapesDataset
from training.datasets.folder import FolderDataset
from training.datasets.kitti import KittiDataset
from training.datasets.nyu import NYUCsvDataset, NYUMatDataset
from training.datasets.synthetic import SyntheticDataset
from training.datasets.world import SyntheticWorldDataset

DATASETS: dict[str, type[DepthDataset]] = {
    "nyu_mat": NYUMatDataset,
    "nyu_csv": NYUCsvDataset,
    "kitti": KittiDataset,
    "cityscapes": CityscapesDataset,
    "folder": FolderDataset,
    "synthetic": SyntheticDataset,
    "synthetic_world": SyntheticWorldDataset,
}


def build_dataset(cfg: dict, split: str) -> Dataset:
    """The reader named by ``cfg["name"]`` (the config's ``data`` section) for ``split`` (train/val/test)."""
    name = cfg.get("name")
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name](cfg, split)


__all__ = [
    "DATASETS", "SPLITS", "CityscapesDataset", "DatasetError", "DepthDataset", "FolderDataset", "KittiDataset",
    "NYUCsvDataset", "NYUMatDataset", "RawSample", "SyntheticDataset", "SyntheticWorldDataset", "build_dataset",
    "chunk_indices", "holdout_split", "worker_init",
]
