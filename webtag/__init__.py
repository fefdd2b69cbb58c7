"""Shared infrastructure of webtag's stages: typed configs, atomic file output, logging.

Stage packages (text_mining -> pipeline -> pretrain -> finetune) import from here; this package
imports none of them.
"""
__version__ = "0.1.0"
