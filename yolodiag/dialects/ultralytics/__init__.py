"""Ultralytics 8.4.190 (YOLOv8, YOLO11, YOLO12 and the other YAMLs of `ultralytics/cfg/models`):
the third dialect, where most users are. (Being built: registered once its table lands.)"""
