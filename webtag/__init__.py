"""Shared infrastructure of webtag's stages: typed configs, atomic file output, file digests,
logging, the parts of a map step, run locks, bad-input accounting, a restricted unpickler, and
the command-line plumbing of the stages.

Stage packages (text_mining -> pipeline -> pretrain -> finetune) import from here; this package
imports none of them.
"""
__version__ = "0.1.0"
