"""Detections: pure decisions over activity records, with their state kept outside."""
