"""The ``fleet`` command line: a thin click layer over the agent, the operator and the adapters.

Every command turns our errors into one clear line on stderr and an exit code that means
something (:mod:`.exit_codes`); no traceback reaches a user for an expected failure.
"""
