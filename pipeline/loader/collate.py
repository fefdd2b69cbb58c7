"""A batch as it crosses the process boundary: labels as packed numpy arrays, plus one typed
metadata record (:class:`BatchMeta`) that stays with the batch from the worker to the trainer.

The worker side (:func:`collate`) builds numpy arrays, which travel pickled through the result
pipe (a tensor would cost a shared-memory segment and a file-descriptor handshake per batch);
the main process makes them tensors (:func:`as_tensors`, no copy).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class BatchMeta:
    """What a batch says about itself besides its images and labels.

    - ``epoch``: the epoch it belongs to (the main process checks it against its own);
    - ``shards_done``: the shards whose every sample has now been delivered, this batch included:
      the loader's resumable position (``ShardLoader.state_dict``) is the union of these;
    - ``bad_samples``: samples lost while this batch was made (damaged, missing or undecodable,
      counted in samples against the shards' manifest counts, :mod:`.bad`);
    - ``remote_retries``: transient remote read errors the worker retried meanwhile (``webtag.storage.RETRIES``);
    - ``padding``: per image, whether it is a padding copy (read again so that every rank has the
      same number of batches); evaluation leaves those out."""
    epoch: int
    shards_done: tuple[str, ...] = ()
    bad_samples: int = 0
    remote_retries: int = 0   # remote reads retried by the worker while this batch was made (webtag.storage)
    padding: np.ndarray | torch.Tensor | None = field(default=None, repr=False)


@dataclass
class EpochMarker:
    """Sent by a worker for each batch that the rank's busiest worker has more in an epoch, so that
    every worker hands the DataLoader's round-robin the same number of items (:mod:`.worker`)."""
    epoch: int


def _packed(lists: list, dtype) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def collate(items: list[tuple[dict, bool]], meta: BatchMeta) -> dict:
    """A batch's labels (``items``: each image's label record and padding flag) as numpy arrays,
    and ``meta`` with the padding flags. Sparse labels are packed as (flat values, offsets):
    image i's keyword ids are ``keyword_ids[keyword_offsets[i]:keyword_offsets[i + 1]]``; likewise
    label_ids/label_weights with label_offsets. ``index`` is the image's train-list index (the
    shard json's ``index``), shared by the repeat_aug copies of one image."""
    labels = [it for it, _ in items]
    kw, kw_off = _packed([it["keyword_ids"] for it in labels], np.int32)
    lid, l_off = _packed([it["label_ids"] for it in labels], np.int32)
    lw, _ = _packed([it["label_weights"] for it in labels], np.float32)
    meta.padding = np.fromiter((pad for _, pad in items), dtype=np.bool_, count=len(items))
    return {
        "class_id": np.fromiter((it["class_id"] for it in labels), dtype=np.int64, count=len(items)),
        "index": np.fromiter((it["index"] for it in labels), dtype=np.int64, count=len(items)),
        "keyword_ids": kw, "keyword_offsets": kw_off,
        "label_ids": lid, "label_weights": lw, "label_offsets": l_off,
        "meta": meta,
    }


def as_tensors(batch: dict) -> dict:
    """The main process's side of :func:`collate`: numpy arrays become tensors (no copy)."""
    meta = batch["meta"]
    if isinstance(meta.padding, np.ndarray):
        meta.padding = torch.from_numpy(meta.padding)
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
