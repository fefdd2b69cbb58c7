"""Shards and streaming: images + text-mining Parquet -> WebDataset shards -> training batches."""
