"""Dataset preparation behind ``basicsr prepare`` (DIV2K sub-images and LMDB, DIV8K Test2K/4K/8K, benchmarks)."""
