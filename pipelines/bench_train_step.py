"""The `train-step` benchmark: clips per second of one full training step, tfvid against PyTorch.

    python -m pipelines.benchmark --bench=train-step --json=train_step.json
    python -m pipelines.benchmark --bench=train-step --train_models=tsn-resnet50 --train_batch=8

tfvid: each model is trained by tfvid's own loop, `tfvid.train.loop.train(...)` (strategy.run of
its train_replica: forward, sparse softmax cross entropy, backward, global-norm clipping at 40,
Caffe-style weight decay 5e-4 on the kernels, SGD with momentum 0.9), on a synthetic in-memory
dataset (one random batch, tf.data from_tensors(...).repeat()); a step_callback records the time
of every step. The first --train_warmup_steps steps (tracing, first-touch allocation) and the
last step (the loop writes its final checkpoint inside it) are not counted; the best of the
other --train_timed_steps steps counts (other programs sharing the cores only slow steps down),
and the median is reported too.

Where the time goes: on the model being trained and the same batch, three tf.functions are
timed, one call of each after each of the first --train_breakdown_rounds timed loop steps
(round-robin with the loop, so that a change in the machine's load touches all alike; the best
call of each counts): forward only (model(x, training=True) and the loss), forward + gradient,
and the full step (a faithful copy of tfvid/train/steps.py's train_replica for one
replica). Shares: forward, backward (= fwd+grad - fwd), optimizer (= step - fwd+grad: clipping,
decay, SGD update) and loop overhead (= the loop's step - the copied step: input wait, bad-data
checks, the host sync of the loss, Python). --train_xla also times the copied step compiled
with XLA (jit_compile=True), which loop.train does not do. --precision (other than float32)
builds the model under that Keras policy and times float32 too in the same run.

PyTorch (optional extra `pip install tfvid[bench]`): the same network and step for TSN with
ResNet-50: torchvision's resnet50 (v1.5: stride on the 3x3 conv, no conv biases; tfvid's
resnet50 is the Keras-applications v1 layout with conv biases, about 5% fewer FLOPs), TSN's
partial BN (every BN but the first frozen, in eval mode), dropout 0.8, fc, the segment average
(B*K, 3, S, S) -> (B, K, classes) -> mean over K, cross entropy, clip_grad_norm_(40), SGD
momentum 0.9 with weight decay 5e-4 on conv / fc weights, channels_last memory format
(--notrain_torch_channels_last: contiguous NCHW) and torch.set_num_threads(os.cpu_count()).
torch and TensorFlow in one process crash, so PyTorch always runs in a process of its own.
torchvision has no BN-Inception or StNet: those rows have no PyTorch number. Without torchvision
a plain-torch ResNet-50 v1.5 (the same layers) is used; without torch the PyTorch fields are
null.

Each (model, framework) runs in its own Python process (TF_ENABLE_ONEDNN_OPTS is read at import;
memory is returned between models). Batch: --train_batch, or 0 for the largest of 32, 16, 8 that
fits: a process whose resident memory passes --train_mem_gb (default 85% of the memory available
at its start) stops itself and the next smaller batch is tried; PyTorch then runs at the batch
tfvid ran at.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import flags

from pipelines.common import define_flag

FLAGS = flags.FLAGS

# name -> model: tfvid.models.build(arch, classes, **kwargs); input: (K, S, S, C) per clip.
MODEL_SPECS = {
    "tsn-bninception": {"arch": "tsn", "classes": 101, "segments": 3, "channels": 3,
                        "input_size": 224, "kwargs": {"backbone": "bninception"}},
    "tsn-resnet50": {"arch": "tsn", "classes": 101, "segments": 3, "channels": 3,
                     "input_size": 224, "kwargs": {"backbone": "resnet50"}, "pytorch": True},
    "stnet-resnet50": {"arch": "stnet", "classes": 400, "segments": 7, "channels": 15,
                       "input_size": 224,
                       "kwargs": {"backbone": "resnet50", "frames_per_segment": 5}},
    # for tests: tfvid's tiny ResNet at width 0.25 and 32x32 inputs (and a tiny torch net)
    "tsn-tiny": {"arch": "tsn", "classes": 101, "segments": 3, "channels": 3, "input_size": 32,
                 "kwargs": {"backbone": "tiny", "width": 0.25}, "pytorch": True},
}
DEFAULT_MODELS = ["tsn-bninception", "tsn-resnet50", "stnet-resnet50"]
AUTO_BATCHES = (32, 16, 8)
SOLVER = {"learning_rate": 0.001, "momentum": 0.9, "weight_decay": 5e-4, "clip_norm": 40.0}
OUT_OF_MEMORY = 75          # exit status of a worker that passed its memory budget
TARGET = 1.0                # tfvid / PyTorch clips per second

define_flag("list", "train_models", DEFAULT_MODELS, "Models of the train-step benchmark: "
            f"{', '.join(MODEL_SPECS)}.")
define_flag("integer", "train_batch", 0, "Clips per training step; 0: the largest of 32, 16, 8 "
            "that fits in --train_mem_gb.")
define_flag("integer", "train_warmup_steps", 1, "Training steps run before timing (>= 1).")
define_flag("integer", "train_timed_steps", 3, "Timed training steps (the best counts; the "
            "breakdown times as many calls of each part).")
define_flag("bool", "train_pytorch", True, "Also time the same step in PyTorch where there is "
            "a torchvision model (needs torch; skipped with a note otherwise).")
define_flag("bool", "train_breakdown", True, "Time forward, forward+gradient and the step "
            "separately (time shares).")
define_flag("bool", "train_torch_channels_last", True, "PyTorch model and batch in "
            "torch.channels_last memory format (else contiguous NCHW).")
define_flag("integer", "train_breakdown_rounds", 2, "Calls of each part of the breakdown "
            "(one after each of the first timed steps; at most --train_timed_steps).")
define_flag("bool", "train_xla", False, "Also time the step compiled with XLA "
            "(tf.function(jit_compile=True)).")
define_flag("enum", "train_onednn", "default", "TF_ENABLE_ONEDNN_OPTS of the tfvid processes: "
            "default (inherited; TF enables oneDNN on x86 Linux), 1 or 0.",
            enum_values=["default", "1", "0"])
define_flag("integer", "train_intra_threads", 0, "tf.config.threading intra-op threads "
            "(0: TF's default, one per core).")
define_flag("integer", "train_inter_threads", 0, "tf.config.threading inter-op threads "
            "(0: TF's default).")
define_flag("float", "train_mem_gb", 0.0, "Memory budget of one benchmark process in GB (0: 85% "
            "of the memory available when it starts).")
define_flag("enum", "precision", "float32", "Precision policy of the tfvid step "
            "(tfvid.train.precision; auto: by the hardware). Other than float32, each model "
            "is also timed in float32 in the same run and the row gives the speed-up.",
            enum_values=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
define_flag("bool", "train_isolate", True, "Run every (model, framework) in its own process.")


# ------------------------------------------------------------------------------ helpers
def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _watch_memory(limit: int, interval: float = 0.05) -> None:
    """Stops this process with OUT_OF_MEMORY once its resident memory passes `limit` bytes (a
    daemon thread), before the kernel's OOM killer picks a process of someone else."""
    def watch():
        while True:
            if _rss_bytes() > limit:
                sys.stderr.write(f"resident memory passed the budget of {limit / 1e9:.1f} GB\n")
                sys.stderr.flush()
                os._exit(OUT_OF_MEMORY)
            time.sleep(interval)
    threading.Thread(target=watch, daemon=True, name="memory-watch").start()


def _stats(times: list[float]) -> dict:
    return {"best_s": min(times), "median_s": statistics.median(times), "n": len(times)}


def _time_calls(fn, n: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------ tfvid
def measure_tfvid(cfg: dict) -> dict:
    """One model in tfvid (see the module docstring). cfg: model, batch, warmup, steps,
    breakdown, xla, intra_threads, inter_threads, seed, precision (loop.train's: the Keras
    policy the model is built under). Returns loop_step and breakdown times (seconds),
    clips_per_s and the precision policy used."""
    import tensorflow as tf
    if cfg.get("intra_threads"):
        tf.config.threading.set_intra_op_parallelism_threads(cfg["intra_threads"])
    if cfg.get("inter_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(cfg["inter_threads"])
    import keras
    import tfvid.models
    from tfvid.train.loop import kernel_variables, train

    spec = MODEL_SPECS[cfg["model"]]
    b, k, s, c = cfg["batch"], spec["segments"], spec["input_size"], spec["channels"]
    warmup, steps = max(int(cfg["warmup"]), 1), int(cfg["steps"])
    rng = tf.random.Generator.from_seed(cfg.get("seed", 0))
    x = rng.uniform((b, k, s, s, c), -1.0, 1.0)
    y = rng.uniform((b,), 0, spec["classes"], dtype=tf.int64)

    built = []

    def model_fn():
        built.append(tfvid.models.build(spec["arch"], spec["classes"], num_segments=k,
                                        input_size=s, **spec["kwargs"]))
        return built[-1]

    def dataset_fn(ctx):
        return tf.data.Dataset.from_tensors((x, y)).repeat()

    # The parts (forward, forward + gradient, the copied step, its XLA version) run round-robin
    # with the loop's steps, inside the step callback: one call of each after each of the first
    # `rounds` timed loop steps, so that a change in the machine's load touches all of them
    # alike. A loop step is timed from the end of one callback to the start of the next.
    enter, leave, parts, times = [], [], {}, {}

    def callback(step, logs):
        enter.append(time.perf_counter())
        if want_parts and warmup <= step < warmup + rounds:
            if step == warmup:                   # trace (and first-run) every part, untimed
                parts.update(_parts(built[-1], x, y, cfg, kernel_variables, keras, tf, times))
            for name, fn in parts.items():
                t0 = time.perf_counter()
                fn()
                times.setdefault(name, []).append(time.perf_counter() - t0)
        leave.append(time.perf_counter())

    want_parts = bool(cfg.get("breakdown") or cfg.get("xla"))
    rounds = min(steps, int(cfg.get("breakdown_rounds") or steps))
    with tempfile.TemporaryDirectory(prefix="tfvid_train_step_") as model_dir:
        t0 = time.perf_counter()
        result = train(model_fn, dataset_fn, model_dir=model_dir, global_batch_size=b,
                       steps=warmup + steps + 1, learning_rate=SOLVER["learning_rate"],
                       momentum=SOLVER["momentum"], weight_decay=SOLVER["weight_decay"],
                       clip_norm=SOLVER["clip_norm"], log_every=10 ** 9,
                       checkpoint_every=10 ** 9, progress=False, step_callback=callback,
                       precision=cfg.get("precision", "float32"))
        total = time.perf_counter() - t0
    # enter[i] ends step i + 1; step j takes enter[j-1] - leave[j-2]. Counted: steps
    # warmup+1 .. warmup+steps (the last one, warmup+steps+1, also saves the checkpoint).
    loop = [enter[j - 1] - leave[j - 2] for j in range(warmup + 1, warmup + steps + 1)]
    out = {"model": cfg["model"], "batch": b, "framework": "tfvid",
           "loop_step": _stats(loop), "loop_step_times_s": loop,
           "first_step_s": enter[0] - t0, "loop_total_s": total,
           "data_wait_fraction": result.metrics.get("data_wait_fraction"),
           "precision": result.metrics.get("precision", "float32"),
           "precision_reason": result.metrics.get("precision_reason"),
           "params": int(result.model.count_params()),
           "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
           "intra_threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "inter_threads": tf.config.threading.get_inter_op_parallelism_threads()}
    for name, t in times.items():
        out[name] = _stats(t) if isinstance(t, list) else t
    best = out["loop_step"]["best_s"]
    out["clips_per_s"] = b / best
    out["clips_per_s_median"] = b / out["loop_step"]["median_s"]
    if "xla_step" in out:
        out["xla_clips_per_s"] = b / out["xla_step"]["best_s"]
    return out


def _parts(model, x, y, cfg, kernel_variables, keras, tf, info) -> dict:
    """{name: () -> None} of forward, forward + gradient and the full step as separate
    tf.functions on one batch (and the step under XLA), each traced and run once here (their
    first-call seconds, or an error, go to `info`)."""
    strategy = tf.distribute.get_strategy()
    trainable = model.trainable_variables
    decayed = {id(v) for v in kernel_variables(model)}
    optimizer = keras.optimizers.SGD(learning_rate=SOLVER["learning_rate"],
                                     momentum=SOLVER["momentum"])
    optimizer.build(trainable)
    clip_norm, weight_decay = SOLVER["clip_norm"], SOLVER["weight_decay"]

    def loss_of(logits):
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits)
        loss = tf.reduce_mean(per_example)
        if model.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        return loss

    def forward():
        return loss_of(tf.cast(model(x, training=True), tf.float32))

    def forward_grad():
        with tf.GradientTape() as tape:
            loss = forward()
        grads = tape.gradient(loss, trainable)
        return loss, tf.linalg.global_norm([g for g in grads if g is not None])

    # A copy of tfvid/train/steps.py make_train_step -> train_replica for one replica, all
    # examples valid (the all-reduces of one replica are identities): loss, gradient,
    # global-norm clip, Caffe weight decay on the kernels, Keras SGD momentum update. Keep it in
    # step with steps.py.
    def replica_step():
        with tf.GradientTape() as tape:
            loss = forward()
        grads = tape.gradient(loss, trainable)
        pairs = [(g, v) for g, v in zip(grads, trainable) if g is not None]
        grads = [tf.convert_to_tensor(g) for g, _ in pairs]
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
        grads = [g + weight_decay * tf.cast(v, g.dtype) if id(v) in decayed else g
                 for g, (_, v) in zip(grads, pairs)]
        optimizer.apply_gradients(zip(grads, [v for _, v in pairs]))
        return loss

    def step():
        return strategy.reduce("SUM", strategy.run(replica_step), None)

    todo = [("forward", forward), ("forward_grad", forward_grad), ("step", step)]
    if not cfg.get("breakdown"):
        todo = []
    if cfg.get("xla"):
        todo.append(("xla_step", step))
    out = {}
    for name, fn in todo:
        compiled = tf.function(fn, jit_compile=name == "xla_step")

        def call(compiled=compiled):          # to the host: the work is done when it returns
            return [t.numpy() for t in tf.nest.flatten(compiled())]
        t0 = time.perf_counter()
        try:
            call()
        except Exception as err:             # XLA may not support every op on this device
            info[f"{name}_error"] = f"{type(err).__name__}: {str(err)[:300]}"
            continue
        info[f"{name}_first_s"] = time.perf_counter() - t0
        out[name] = call
    return out


# ---------------------------------------------------------------------------- PyTorch
def _torch_backbone(name: str, torch, nn):
    """(feature module (B, 3, S, S) -> (B, D), D) of a torch backbone: torchvision's resnet50
    (or a plain copy of it without torchvision) or a tiny ResNet-like net for tests."""
    if name == "resnet50":
        try:
            import torchvision
            net, source = torchvision.models.resnet50(), f"torchvision {torchvision.__version__}"
        except ImportError:
            net, source = _plain_resnet50(torch, nn), "plain-torch ResNet-50 v1.5 (no torchvision)"
        net.fc = nn.Identity()
        return net, 2048, source
    if name == "tiny":           # like tfvid's tiny at width 0.25: 4 stages, 4-8-16-32 channels
        layers, cin = [], 3
        for i, cout in enumerate((4, 8, 16, 32)):
            layers += [nn.Conv2d(cin, cout, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*layers), cin, "tiny torch net"
    raise ValueError(f"no PyTorch model for backbone {name!r}")


def _plain_resnet50(torch, nn):
    """torchvision's resnet50 layout (bottleneck v1.5: stride on the 3x3 conv) in plain torch."""
    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + idt)

    class ResNet50(nn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                         (512, 3, 2))):
                layer = []
                for j in range(blocks):
                    layer.append(Bottleneck(cin, width, stride if j == 0 else 1))
                    cin = width * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet50()


def measure_pytorch(cfg: dict) -> dict:
    """The same TSN network and training step in PyTorch (see the module docstring)."""
    import torch
    from torch import nn
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(cfg.get("seed", 0))
    spec = MODEL_SPECS[cfg["model"]]
    b, k, s, c = cfg["batch"], spec["segments"], spec["input_size"], spec["channels"]
    warmup, steps = max(int(cfg["warmup"]), 1), int(cfg["steps"])
    backbone, dim, source = _torch_backbone(spec["kwargs"]["backbone"], torch, nn)

    class TSN(nn.Module):
        def __init__(self):
            super().__init__()
            self.base, self.dropout = backbone, nn.Dropout(0.8)
            self.fc = nn.Linear(dim, spec["classes"])
            nn.init.normal_(self.fc.weight, 0, 0.001)
            nn.init.zeros_(self.fc.bias)

        def forward(self, clips):                        # (B*K, 3, S, S)
            logits = self.fc(self.dropout(self.base(clips)))
            return logits.view(-1, k, logits.shape[-1]).mean(1)   # segment average

        def train(self, mode=True):                      # TSN's partial BN (tsn-pytorch)
            super().train(mode)
            bns = [m for m in self.base.modules() if isinstance(m, nn.BatchNorm2d)]
            for bn in bns[1:]:
                bn.eval()
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)
            return self

    fmt = torch.channels_last if cfg.get("channels_last", True) else torch.contiguous_format
    model = TSN().to(memory_format=fmt)
    model.train()
    decay = [p for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
             for n, p in m.named_parameters(recurse=False) if n == "weight"]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": SOLVER["weight_decay"]},
                           {"params": rest, "weight_decay": 0.0}],
                          lr=SOLVER["learning_rate"], momentum=SOLVER["momentum"])
    x = torch.rand(b, k, c, s, s) * 2 - 1
    x = x.view(b * k, c, s, s).contiguous(memory_format=fmt)
    y = torch.randint(0, spec["classes"], (b,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(params, SOLVER["clip_norm"])
        opt.step()
        return loss.item()

    def forward():
        with torch.no_grad():                  # what inference costs; training keeps graphs
            return loss_fn(model(x), y).item()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = _time_calls(step, steps, warmup=warmup - 1)
    out = {"model": cfg["model"], "batch": b, "framework": "pytorch", "step": _stats(times),
           "step_times_s": times, "first_step_s": first, "source": source,
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "channels_last": fmt is torch.channels_last,
           "params": sum(p.numel() for p in model.parameters())}
    out["clips_per_s"] = b / out["step"]["best_s"]
    out["clips_per_s_median"] = b / out["step"]["median_s"]
    if cfg.get("breakdown"):
        n = min(steps, int(cfg.get("breakdown_rounds") or steps))
        out["forward_no_grad"] = _stats(_time_calls(forward, n, warmup=0))
    return out


def torch_status() -> tuple[bool, str]:
    """(importable, note) of torch, without importing it."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed (pip install tfvid[bench]): no PyTorch numbers"
    if importlib.util.find_spec("torchvision") is None:
        return True, "torchvision is not installed: PyTorch runs a plain-torch ResNet-50 v1.5"
    return True, ""


# ------------------------------------------------------------------------- orchestration
def _run_worker(framework: str, cfg: dict, *, isolate: bool, env: dict | None,
                mem_limit: int | None) -> dict:
    """measure_<framework>(cfg), in a fresh Python process when `isolate`. Returns its result,
    or {'error': ..., 'out_of_memory': bool}. PyTorch always runs in its own process when
    TensorFlow is loaded here: torch and TensorFlow in one process crash (segmentation fault)."""
    if framework == "pytorch" and "tensorflow" in sys.modules:
        isolate = True
    if not isolate:
        fn = measure_tfvid if framework == "tfvid" else measure_pytorch
        try:
            return fn(cfg)
        except MemoryError as err:
            return {"error": f"MemoryError: {err}", "out_of_memory": True}
    with tempfile.TemporaryDirectory(prefix="tfvid_bench_worker_") as tmp:
        result_path = os.path.join(tmp, "result.json")
        job = {"framework": framework, "cfg": cfg, "mem_limit": mem_limit}
        proc = subprocess.run([sys.executable, "-m", "pipelines.bench_train_step",
                               json.dumps(job), result_path],
                              env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if proc.returncode == 0 and os.path.exists(result_path):
            with open(result_path) as f:
                return json.load(f)
        tail = "\n".join(proc.stdout.strip().splitlines()[-6:])
        oom = proc.returncode in (OUT_OF_MEMORY, -9) or "ResourceExhausted" in proc.stdout \
            or "MemoryError" in proc.stdout
        return {"error": f"exit status {proc.returncode}: {tail}", "out_of_memory": oom}


def run_train_step_benchmark(models=None, *, batch: int = 0, warmup: int = 1, steps: int = 3,
                             pytorch: bool = True, breakdown: bool = True, xla: bool = False,
                             onednn: str = "default", intra_threads: int = 0,
                             inter_threads: int = 0, mem_gb: float = 0.0, isolate: bool = True,
                             torch_channels_last: bool = True, breakdown_rounds: int = 2,
                             seed: int = 0, precision: str = "float32", log=None) -> dict:
    """Measures every model of `models` (names of MODEL_SPECS) in tfvid and, where possible, in
    PyTorch; returns the --json content: {models: {name: {tfvid_clips_per_s,
    pytorch_clips_per_s, ratio, batch, shares, ...}}, settings, notes, load_average}.
    precision other than float32: tfvid runs under that policy (PyTorch stays float32), and
    each model is timed again in float32 right after it (same batch, same run: the machine's
    load touches both alike); the row adds float32_clips_per_s and precision_speedup."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    models = list(models or DEFAULT_MODELS)
    unknown = [m for m in models if m not in MODEL_SPECS]
    if unknown:
        raise ValueError(f"unknown train-step models {unknown}; known: {list(MODEL_SPECS)}")
    if warmup < 1 or steps < 1 or batch < 0:
        raise ValueError(f"need warmup >= 1, steps >= 1 and batch >= 0, got {warmup}, {steps}, "
                         f"{batch}")
    env = {} if onednn == "default" else {"TF_ENABLE_ONEDNN_OPTS": onednn}
    have_torch, torch_note = torch_status()
    notes = [n for n in [torch_note] if n]
    load_before = os.getloadavg()
    base = {"warmup": warmup, "steps": steps, "breakdown": breakdown, "xla": xla,
            "intra_threads": intra_threads, "inter_threads": inter_threads, "seed": seed,
            "channels_last": torch_channels_last, "breakdown_rounds": breakdown_rounds,
            "precision": precision}
    rows, raw = {}, {}
    for name in models:
        spec = MODEL_SPECS[name]
        tf_res, tried = None, []
        for b in ([batch] if batch else AUTO_BATCHES):
            limit = int(mem_gb * 1e9) if mem_gb else int(0.85 * _available_bytes()) or None
            log(f"[train-step] {name}: tfvid, batch {b} ...")
            res = _run_worker("tfvid", {**base, "model": name, "batch": b}, isolate=isolate,
                              env=env, mem_limit=limit)
            tried.append(b)
            if "error" not in res:
                tf_res = res
                break
            log(f"[train-step] {name}: tfvid batch {b} failed: {res['error']}")
            if not res.get("out_of_memory"):
                break
        pt_res, pt_note = None, None
        if not spec.get("pytorch"):
            pt_note = "no torchvision model: PyTorch not measured"
        elif not pytorch:
            pt_note = "PyTorch not asked for (--notrain_pytorch)"
        elif not have_torch:
            pt_note = "torch not installed"
        elif tf_res is not None:
            log(f"[train-step] {name}: PyTorch, batch {tf_res['batch']} ...")
            limit = int(mem_gb * 1e9) if mem_gb else int(0.85 * _available_bytes()) or None
            pt_res = _run_worker("pytorch", {**base, "model": name, "batch": tf_res["batch"]},
                                 isolate=isolate, env=None, mem_limit=limit)
            if "error" in pt_res:
                pt_note, pt_res = f"PyTorch failed: {pt_res['error']}", None
        f32_res = None
        if tf_res is not None and tf_res.get("precision", "float32") != "float32":
            log(f"[train-step] {name}: tfvid float32 (against {tf_res['precision']}), batch "
                f"{tf_res['batch']} ...")
            f32_res = _run_worker("tfvid", {**base, "model": name, "batch": tf_res["batch"],
                                            "precision": "float32"}, isolate=isolate, env=env,
                                  mem_limit=limit)
        raw[name] = {"tfvid": tf_res, "pytorch": pt_res, "batches_tried": tried,
                     "tfvid_float32": f32_res}
        rows[name] = _row(tf_res, pt_res, pt_note, res if tf_res is None else None)
        if f32_res is not None:
            rows[name].update(_precision_row(tf_res, f32_res))
        log(f"[train-step] {name}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in rows[name].items()
            if k in ("tfvid_clips_per_s", "pytorch_clips_per_s", "ratio", "float32_clips_per_s",
                     "precision_speedup") and v is not None))
    ratios = [r["ratio"] for r in rows.values() if r["ratio"] is not None]
    return {
        "models": rows,
        "target": {"ratio": TARGET, "met": None if not ratios else all(r >= TARGET
                                                                     for r in ratios)},
        "settings": {"models": models, "batch": batch or "auto (32, 16, 8)",
                     "warmup_steps": warmup, "timed_steps": steps, "solver": SOLVER,
                     "onednn": onednn, "intra_threads": intra_threads,
                     "inter_threads": inter_threads, "xla": xla, "isolate": isolate,
                     "torch_channels_last": torch_channels_last,
                     "breakdown_rounds": breakdown_rounds, "precision": precision,
                     "cores": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
                     "cpu": _cpu_name(), "specs": {m: MODEL_SPECS[m] for m in models}},
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "notes": notes,
        "raw": raw,
    }


def _precision_row(tf_res: dict, f32_res: dict) -> dict:
    """precision, float32_clips_per_s and precision_speedup (best steps) of a mixed row."""
    if "error" in f32_res:
        return {"precision": tf_res["precision"], "float32_error": f32_res["error"]}
    return {"precision": tf_res["precision"], "float32_clips_per_s": f32_res["clips_per_s"],
            "precision_speedup": tf_res["clips_per_s"] / f32_res["clips_per_s"],
            "precision_speedup_median": (tf_res["clips_per_s_median"] /
                                         f32_res["clips_per_s_median"])}


def _row(tf_res, pt_res, pt_note, failure) -> dict:
    row = {"tfvid_clips_per_s": None, "pytorch_clips_per_s": None, "ratio": None, "batch": None}
    if tf_res is None:
        row["error"] = (failure or {}).get("error", "not measured")
        return row
    row.update(batch=tf_res["batch"], tfvid_clips_per_s=tf_res["clips_per_s"],
               tfvid_clips_per_s_median=tf_res["clips_per_s_median"],
               tfvid_step_s=tf_res["loop_step"]["best_s"], params=tf_res["params"])
    if "xla_clips_per_s" in tf_res:
        row["tfvid_xla_clips_per_s"] = tf_res["xla_clips_per_s"]
    elif "xla_step_error" in tf_res:
        row["tfvid_xla_error"] = tf_res["xla_step_error"]
    if all(p in tf_res for p in ("forward", "forward_grad", "step")):
        fwd, fg, st = (tf_res[p]["best_s"] for p in ("forward", "forward_grad", "step"))
        loop = tf_res["loop_step"]["best_s"]
        parts = {"forward": fwd, "backward": max(fg - fwd, 0.0),
                 "optimizer": max(st - fg, 0.0), "loop_overhead": max(loop - st, 0.0)}
        total = sum(parts.values())
        row["step_parts_s"] = parts
        row["shares"] = {p: t / total for p, t in parts.items()}
        row["copied_step_clips_per_s"] = tf_res["batch"] / st
    if pt_res is not None:
        row.update(pytorch_clips_per_s=pt_res["clips_per_s"],
                   pytorch_clips_per_s_median=pt_res["clips_per_s_median"],
                   pytorch_step_s=pt_res["step"]["best_s"], pytorch_model=pt_res["source"],
                   pytorch_params=pt_res["params"])
        row["ratio"] = row["tfvid_clips_per_s"] / row["pytorch_clips_per_s"]
        row["ratio_median"] = (row["tfvid_clips_per_s_median"] /
                               row["pytorch_clips_per_s_median"])
    else:
        row["pytorch_note"] = pt_note
    return row


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def format_table(result: dict, markdown: bool = False) -> str:
    """The result as a table (plain text or markdown), then the target and notes."""
    xla = any("tfvid_xla_clips_per_s" in r for r in result["models"].values())
    head = ["model", "batch", "tfvid clips/s", "PyTorch clips/s", "ratio"]
    head += ["XLA clips/s"] if xla else []
    head += ["tfvid time shares (fwd / bwd / opt / loop)"]
    rows = [tuple(head)]
    for name, r in result["models"].items():
        def num(v, fmt="{:.2f}"):
            return "-" if v is None else fmt.format(v)
        sh = r.get("shares")
        share = ("-" if not sh else " / ".join(f"{100 * sh[p]:.0f}%" for p in
                                                ("forward", "backward", "optimizer",
                                                 "loop_overhead")))
        row = [name, num(r["batch"], "{}"), num(r["tfvid_clips_per_s"]),
               num(r["pytorch_clips_per_s"]), num(r["ratio"])]
        row += [num(r.get("tfvid_xla_clips_per_s"))] if xla else []
        rows.append(tuple(row + [share]))
    n = len(head)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|---|" + "---:|" * (n - 2) + "---|")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(n)]
        lines = ["  ".join(x.ljust(w) if i in (0, n - 1) else x.rjust(w)
                           for i, (x, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    s, la = result["settings"], result["load_average"]
    lines += ["", f"{s['cores']} cores ({s['cpu']}); best of {s['timed_steps']} timed steps after "
              f"{s['warmup_steps']} warm-up; oneDNN {s['onednn']}, intra/inter threads "
              f"{s['intra_threads'] or 'TF default'}/{s['inter_threads'] or 'TF default'}; "
              f"load average {la['before'][0]:.2f} before, {la['after'][0]:.2f} after."]
    for name, r in result["models"].items():
        if r.get("pytorch_note"):
            lines.append(f"{name}: {r['pytorch_note']}")
        if r.get("error"):
            lines.append(f"{name}: tfvid not measured: {r['error']}")
        if r.get("precision_speedup") is not None:
            lines.append(f"{name}: tfvid {r['precision']} {r['tfvid_clips_per_s']:.2f} clips/s "
                         f"against float32 {r['float32_clips_per_s']:.2f} in the same run: "
                         f"{r['precision_speedup']:.2f}x (median steps "
                         f"{r['precision_speedup_median']:.2f}x)")
    t = result["target"]
    if t["met"] is not None:
        lines.append(f"target tfvid / PyTorch >= {t['ratio']:.1f}: "
                     f"{'met' if t['met'] else 'NOT met'}")
    lines += list(result["notes"])
    return "\n".join(lines) + "\n"


def run_from_flags() -> dict:
    """The benchmark with the --train_* flags (pipelines/benchmark.py --bench=train-step)."""
    from absl import app
    for name in ("train_warmup_steps", "train_timed_steps", "train_breakdown_rounds"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    if FLAGS.train_batch < 0:
        raise app.UsageError(f"--train_batch must be >= 0, got {FLAGS.train_batch}")
    unknown = sorted(set(FLAGS.train_models) - set(MODEL_SPECS))
    if unknown:
        raise app.UsageError(f"--train_models: unknown {unknown}; known: {list(MODEL_SPECS)}")
    return run_train_step_benchmark(
        FLAGS.train_models, batch=FLAGS.train_batch, warmup=FLAGS.train_warmup_steps,
        steps=FLAGS.train_timed_steps, pytorch=FLAGS.train_pytorch,
        breakdown=FLAGS.train_breakdown,
        xla=FLAGS.train_xla, onednn=FLAGS.train_onednn, intra_threads=FLAGS.train_intra_threads,
        inter_threads=FLAGS.train_inter_threads, mem_gb=FLAGS.train_mem_gb,
        isolate=FLAGS.train_isolate, torch_channels_last=FLAGS.train_torch_channels_last,
        breakdown_rounds=FLAGS.train_breakdown_rounds, precision=FLAGS.precision)


def _worker_main(argv: list[str]) -> int:
    """python -m pipelines.bench_train_step JOB_JSON RESULT_PATH (one isolated measurement)."""
    job, result_path = json.loads(argv[0]), argv[1]
    if job.get("mem_limit"):
        _watch_memory(int(job["mem_limit"]))
    fn = measure_tfvid if job["framework"] == "tfvid" else measure_pytorch
    try:
        result = fn(job["cfg"])
    except MemoryError:
        return OUT_OF_MEMORY
    except Exception as err:   # noqa: BLE001 -- reported to the parent
        if type(err).__name__ == "ResourceExhaustedError":
            print(f"ResourceExhausted: {err}", flush=True)
            return OUT_OF_MEMORY
        raise
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
