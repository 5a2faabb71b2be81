"""Predictions and model downloads from a job's ONNX export (ONNX Runtime; never torch)."""
