"""Nova scheduler filter and weigher that pack accelerator requests."""
