"""The core every other layer imports: the algorithm and task interfaces and their registries,
preferences, the Gram-matrix combination of gradients, the simplex solvers, configuration errors
and determinism."""
