"""The streaming loader over our WebDataset shards, for pretraining, finetuning and inference.

A rank's batches come from this pipeline, one module per stage:

    plan          plan.py         per-epoch shuffle of the shard list, dealt to ranks, then workers
    split         plan.py         by expected sample count; equal batch counts on every rank
    read          tar.py          the lean tar reader: complete samples, bad members counted
    repeat        sampling.py     repeat factors (class / sqrt / keyword sampling), stochastic rounding
    shuffle       stages.py       a shuffle buffer that tracks which shards are fully delivered
    decode        paths.py        CPU path (pil / torchvision in the workers) or GPU path (nvJPEG)
    augment       augment.py      RandomResizedCrop / centre crop, flip (workers); jitter on the device
    batch         collate.py      packed labels + BatchMeta (epoch, shards done, bad samples, padding)
    cross         ring.py         images through shared-memory ring buffers, labels through the pipe
    workers       worker.py       one stream per DataLoader worker, streaming on across epochs
    the loader    shard_loader.py ShardLoader: epochs, resumable state, worker lifetime
    device        device.py       DevicePrefetcher, gpu_decode, GpuAugment

Every rank yields the same number of batches per epoch, so DDP never waits on a rank that ran
out of data; every real sample appears once per epoch (``instance`` sampling); ``state_dict()``
(merged over ranks with :func:`merge_states`) resumes an epoch with the shards not yet consumed,
none read twice, none skipped (a shard delivered in part is read again from its start).
"""
from .augment import CpuAugment, centre_box, rrc_box
from .bad import BadSamples
from .collate import BatchMeta
from .config import LoaderConfig
from .device import DevicePrefetcher, GpuAugment, gpu_decode
from .paths import batch_path
from .plan import EpochPlanner, WorkerPlan, merge_states, plan_epoch
from .shard_loader import ShardLoader
from .stages import sample_stream
from .tar import iter_tar, read_shard

__all__ = ["BadSamples", "BatchMeta", "CpuAugment", "DevicePrefetcher", "EpochPlanner", "GpuAugment",
           "LoaderConfig", "ShardLoader", "WorkerPlan", "batch_path", "centre_box", "gpu_decode", "iter_tar",
           "merge_states", "plan_epoch", "read_shard", "rrc_box", "sample_stream"]
