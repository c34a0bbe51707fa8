"""Core: the decisions of harmony-fleet, as pure functions over plain values.

Nothing in this package performs I/O (no asyncio, no sockets, no files, no subprocesses; an
import-linter contract enforces it). The caller does the I/O and feeds the results back in. That
is what lets the upgrade state machine and the operator's commit decision be tested
exhaustively, with property tests, in milliseconds, and lets the documentation be generated from
the same tables the code runs.
"""
