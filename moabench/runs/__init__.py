"""Running: one run's config resolution and execution (`runner`), its record on disk (`records`),
and sweeps of many runs, locally or on Ray."""
