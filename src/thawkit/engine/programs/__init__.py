"""Standalone programs built on the core: DAPT, distillation, LR range test, Ray Train, ONNX export, cache warming."""
