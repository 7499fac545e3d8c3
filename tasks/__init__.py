"""Built-in tasks: one module per task family, each registered with `@register_task`."""

from moabench.tasks import analytic  # noqa: F401  (imported for its registrations)
