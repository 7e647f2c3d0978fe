"""The core layer: what every other part of the testbed agrees on.

* :mod:`testbed.core.config`: the scenario (Table 2, Sec. 7.1) as validated dataclasses;
* :mod:`testbed.core.system_model`: eqs. (1)-(13), (23), (32) and the amenders of
  Secs. 6.2.2 and 6.3.2 as pure numpy functions;
* :mod:`testbed.core.records`: the world-facing records ``FrameState``, ``SlotState`` and
  ``SlotOutcome``;
* :mod:`testbed.core.seeding`: every seeding role of a run, in one place;
* :mod:`testbed.core.observation`: the eq. (21) observation, one encoder and its decoder;
* :mod:`testbed.core.metrics`: a metrics accumulator over slot outcomes and ``summarise``.

The core imports nothing else of the project, and neither torch nor gymnasium (an
import-linter contract in ``pyproject.toml`` checks it).
"""
