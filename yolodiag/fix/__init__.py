"""`yolodiag fix`: the findings' own edits applied to the model YAML's text. A check that
knows the certain repair of what it found attaches a `findings.Fix` (edits by meaning: a row's
field, a `from` entry, a row split in two, a top-level key); `edits` applies them to the YAML's
rows and renumbers every `from` a split moved, `text` writes the result into the YAML's own
characters (only the nodes that changed; comments, order and formatting elsewhere stay
byte-identical), and `engine` loops as ruff does: check, apply one fix, check again, keep it
only if it resolved its finding without raising a new error, until nothing fixable is left.
"""
