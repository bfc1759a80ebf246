"""The paper's reproduction: Frankle & Carbin's experiments as configurations of the framework.

:mod:`paper` holds the paper's numbers and :mod:`published` the statements of the work after it;
:mod:`mnist` and :mod:`xor` are the experiments, :mod:`instability_runs` the instability
analysis of a stored run; :mod:`analysis`, :mod:`connectivity`, :mod:`results`, :mod:`claims`
and :mod:`cost` read the stored runs back into the report. Nothing in :mod:`lth_jax` outside
this package imports it.
"""
