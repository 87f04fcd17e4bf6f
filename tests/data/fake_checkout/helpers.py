"""This fixture checkout's own helper module: models/common.py imports it as a checkout's
common.py imports its `utils`, which works only with the checkout's root on sys.path."""

EXPANSION = 1
