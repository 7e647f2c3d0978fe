"""Policies, one file per algorithm: RCARS, SCHRS, the exact optimiser, DDQN, DDPG, D3PG and
T2DRL. Agents decide from state (``testbed.core`` records) and never call a node; the
registry that builds them by name is the application's (``testbed.sim.policies``).
"""
