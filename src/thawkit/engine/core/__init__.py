"""The training core: pipeline, loop, Trainer glue, stages, callbacks, resume and run writing."""
