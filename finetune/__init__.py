"""Finetuning with a new 5000-way head, building on pretrain's trainer (issue 5)."""
