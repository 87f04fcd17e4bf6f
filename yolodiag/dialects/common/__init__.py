"""What two or more dialects share exactly, and nothing else: the channel rules of the parse_model
YOLOv5 v7.0 and YOLOv7 share (`rules`), their stock YAMLs' default anchor rows (`anchors`), the
small readers their packages use to sniff a YAML and to list their blocks (`reading`), the
anchor candidate matcher of their losses (`matching`) and the loss mathematics on top of it
(`loss_math`: CIoU, BCE/focal, the objectness balance, train.py's gain scaling), and the safe
checkpoint reader (`checkpoint`, `checkpoint_format`) and name-and-shape transfer (`transfer`)
their train.py files share, each parameterised by the dialect. No dialect registers here."""
