"""The search: training a candidate, the objective, the study and its workers, samplers, recovery, re-rank, progress
and the summary."""
