"""Repository root conftest: keeps pytest from collecting outputs and benchmarks.

The drills' fixtures come from the restoredrill pytest plugin (entry point
``pytest11``), so ``pytest drills/ --inventory FILE`` works from anywhere.
"""
collect_ignore = ["reports", "benchmarks", "lab-out", "build", "dist"]
