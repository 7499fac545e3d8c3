"""Built-in tasks: one module per task family, each registered with `@register_task`."""

from moabench.tasks import analytic, math, safety, summarization  # noqa: F401  (registrations)
