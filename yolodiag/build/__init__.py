"""ModelSpec -> BuiltModel, shared by every dialect: `plan` (the module-table entry and the rule
walk), `builder` (instantiation, routing, the dialect's finish), `meta` (shape-only forwards)."""
