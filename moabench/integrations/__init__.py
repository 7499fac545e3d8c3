"""moabench's algorithms inside other libraries' training loops.

- `trl`: `MultiObjectiveDPOTrainer` and `MultiObjectiveGRPOTrainer`, trl's DPO and GRPO trainers
  with any registered algorithm combining the objectives.

Nothing in moabench imports this package, so `moabench list` and the benchmark's own runs never
pay for trl's import.
"""
