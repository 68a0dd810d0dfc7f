//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
