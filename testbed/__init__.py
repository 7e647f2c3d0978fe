"""Edge-AIGC testbed: the core (``testbed.core``) and the application on top of it.

The core holds the scenario, the system model, the records, seeding, the observation codec
and metrics, and imports nothing else of the project. The application (the simulator and
runner, the frame/slot driver, the Gymnasium environments, compare, experiments, training
and the CLI) sits on top of ``agents``, ``ue_emulator``, ``edge_node``, ``cloud_node`` and
``calibration``. Importing this package imports nothing: ``import testbed.sim.envs`` registers
the Gymnasium environments. See ``docs/architecture.md``.
"""
