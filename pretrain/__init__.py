"""Pretraining (WT-Set, LW-Set) under Accelerate and Slurm: built on the pipeline's loader (issue 4)."""
