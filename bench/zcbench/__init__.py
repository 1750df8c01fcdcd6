"""The benchmarks of zc.asynchronous (``python bench/run.py``)."""
