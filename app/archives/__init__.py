"""Finding or making an archive: the local cache, the shared cache and single-flight."""
