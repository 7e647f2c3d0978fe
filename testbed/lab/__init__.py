"""Experiments on many runs: the paper's figures, sweeps, comparisons, run tasks and the
workers that run them, convergence verdicts and plots."""
