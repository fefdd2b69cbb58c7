"""Shared infrastructure of webtag's stages: typed configs, atomic file output, logging, the parts
of a map step, bad-input accounting, and the command-line plumbing of the training stages.

Stage packages (text_mining -> pipeline -> pretrain -> finetune) import from here; this package
imports none of them.
"""
__version__ = "0.1.0"
