"""Building blocks of ``basicsr bench`` (see :mod:`adaformer_arch.bench` and docs/benchmark.md)."""
