"""tfvid.train: strategy selection, learning-rate schedules and the custom training loop.

    strategy = make_strategy("mirrored")          # first, before any other TensorFlow op
    model, metrics = train(model_fn, dataset_fn, strategy=strategy, model_dir="runs/x",
                           steps=3500, global_batch_size=256,
                           learning_rate=make_schedule("step", 0.001, [1500, 3000]),
                           weight_decay=5e-4, clip_norm=40, precision="auto")
"""
from tfvid.train.loop import TrainResult, kernel_variables, l2_penalty, train
from tfvid.train.precision import PRECISIONS, choose_precision
from tfvid.train.schedules import MultiStepSchedule, PlateauController, make_schedule
from tfvid.train.strategy import STRATEGIES, is_chief, make_strategy

__all__ = ["train", "TrainResult", "kernel_variables", "l2_penalty", "make_strategy",
           "is_chief", "STRATEGIES", "make_schedule", "MultiStepSchedule", "PlateauController",
           "PRECISIONS", "choose_precision"]
