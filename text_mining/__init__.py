"""Text mining: WebVision metadata -> keywords (WT-Set) and label weights (LW-Set) in Parquet."""
