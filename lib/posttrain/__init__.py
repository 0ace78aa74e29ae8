"""posttrain: does massive SFT need pre-training? The study's machinery, from a laptop CPU to many GPUs.

Stages (one module each): data, models, training, benchmarks, generation, grading, metrics, evaluation, report.
Light modules (grading, metrics, params) import without torch.
"""
__version__ = "0.1.0"
