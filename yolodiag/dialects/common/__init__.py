"""What two or more dialects share exactly, and nothing else: YOLOv5 v7.0's and YOLOv7's
parse_model complete rows by the same channel rules (`rules`). No dialect registers here."""
