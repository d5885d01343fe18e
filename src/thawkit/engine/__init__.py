"""The engine, in three parts whose imports flow one way (programs > core > cache):

- ``core/``: the one training sequence (pipeline, loop, Trainer glue, stages, callbacks, resume, run writing);
- ``cache/``: the frozen-layer cache (feature store, cached training path, model surgery);
- ``programs/``: standalone programs built on the core (DAPT, distillation, LR range test, Ray Train,
  ONNX export, cache warming).

It runs what a ``thawkit.runplan.RunPlan`` says; it resolves no setting itself (``thawkit.planner`` does).
"""
