"""Derived facts several checks and the report read: why a forward crashed, the target
assignment of a batch, the anchors' fit to --data labels. `checks.engine.Facts` computes each
lazily, once per run; the checks only read them. Nothing here registers a check or imports the
check modules, so the engine and the checks do not import each other.
"""
