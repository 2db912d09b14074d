"""Data: the dataset readers (built-in, folder, arrays, your own loader), the cache of decoded images, the
in-memory bundle, and the preprocessing an export carries. :func:`load_data` is the way in."""

from archsearch.data.bundle import DataBundle, clear_cache, load_data
from archsearch.data.readers import DATASETS

__all__ = ["DATASETS", "DataBundle", "clear_cache", "load_data"]
