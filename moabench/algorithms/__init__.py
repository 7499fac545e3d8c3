"""Built-in algorithms: one module per algorithm, each registered with `@register_algorithm`."""

from moabench.algorithms import (  # noqa: F401  (imported for their registrations)
    cagrad,
    conditioned,
    dynamic_weighting,
    gapo,
    gdpo,
    ls,
    mgda,
    mod,
    modpo,
    pama,
    raco,
    rewarded_soups,
    ric,
    upgrad,
)
