"""Edge-AIGC testbed: the paper's system model, its environments, traces and the CLI.

Importing the package registers ``testbed/ResourceAllocation-v0`` and
``testbed/ModelCaching-v0`` with Gymnasium.
"""

from testbed.envs import register_envs

register_envs()

__all__ = ["register_envs"]
