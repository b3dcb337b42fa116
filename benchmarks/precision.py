"""Train-step throughput per model in float32 and bfloat16, side by side, with each model's FLOPs
per image and the share of this CPU's peak it reaches.

- FLOPs: TensorFlow's profiler counts the forward pass of one image (a multiply-add is 2 FLOPs);
  a training step costs about 3 forward passes (forward, and the backward pass's two products),
  the usual estimate (Kaplan et al. 2020), so train FLOPs/image = 3 x forward.
- Peak: cores x clock x FLOPs per cycle and core, read from /proc/cpuinfo. Per cycle and core:
  AVX-512 float32 with two 512-bit FMA units is 64; a core that runs AVX-512 on two 256-bit
  units (AMD Zen 4) is 32; AVX512-BF16 dot products double that; AMX-BF16 is 1024. The
  formula and the assumption are printed beside the numbers.
- Throughput: images/s of a compiled custom train step (`fmfp_tf.training.loop.make_steps`, the
  one `train` uses) at batch 128 on random data, float32 and bfloat16 alternating in rounds
  (`common.interleaved`), so their ratio holds when the machine's load drifts.

    python benchmarks/precision.py [--models dnn1,dnn2,dnn3,dnn4,facenet] [--batch 128]
"""
import argparse

import common
import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import models, provenance
from fmfp_tf.training import precision
from fmfp_tf.training.loop import make_steps


def forward_flops(name, shape, classes):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    from tensorflow.python.profiler import model_analyzer, option_builder

    model = models.build(name, shape, classes)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *shape), tf.float32))
    graph = convert_variables_to_constants_v2(function).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, options=options).total_float_ops


def peak_flops():
    """(float32 peak, bfloat16 peak, how they were derived) in FLOP/s."""
    flags = provenance.cpu_flags()
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
        text = handle.read()
    mhz = max(float(line.split(":")[1]) for line in text.splitlines()
              if line.startswith("cpu MHz"))
    vendor = "AMD" if "AuthenticAMD" in text else "Intel"
    cores = len([line for line in text.splitlines() if line.startswith("processor")])
    per_cycle = 32 if vendor == "AMD" else 64  # Zen 4 splits AVX-512 into two 256-bit halves
    if "avx512f" not in flags:
        per_cycle = 32 if "fma" in flags else 16
    bf16_per_cycle = 1024 if "amx_bf16" in flags else (
        2 * per_cycle if "avx512_bf16" in flags else per_cycle)
    how = (f"{cores} vCPUs x {mhz / 1000:.2f} GHz x {per_cycle} float32 FLOPs/cycle "
           f"({vendor}, {'AVX-512' if 'avx512f' in flags else 'AVX2'}) and x {bf16_per_cycle} "
           "bfloat16 FLOPs/cycle (" + ("AMX" if "amx_bf16" in flags else "AVX512-BF16" if
                                       "avx512_bf16" in flags else "no native bfloat16")
           + "); vCPUs counted as cores")
    scale = cores * mhz * 1e6
    return scale * per_cycle, scale * bf16_per_cycle, how


def step_function(name, shape, classes, dtype, batch):
    with precision.policy(dtype):
        keras.utils.set_random_seed(0)
        model = models.build(name, shape, classes)
        optimizer = keras.optimizers.Adam(1e-3)
    strategy = tf.distribute.get_strategy()
    optimizer.build(model.trainable_variables)
    train_step, _ = make_steps(model, optimizer, strategy)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *shape), np.float32))
    y = tf.constant(rng.integers(0, classes, batch).astype(np.int32))
    return lambda: [v.numpy() for v in train_step(x, y)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dnn1,dnn2,dnn3,dnn4,facenet")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    peak32, peak16, how = peak_flops()
    lines = [f"Batch {args.batch}, 32x32 inputs (3 channels; facenet 1, as on the face sets), "
             "custom train step, float32 and bfloat16 interleaved.", "",
             f"Peak: {how}: float32 {peak32 / 1e9:.0f} GFLOP/s, bfloat16 {peak16 / 1e9:.0f} "
             "GFLOP/s.", "",
             "| model | forward MFLOPs/image | train MFLOPs/image | float32 images/s | "
             "bfloat16 images/s | bf16 / f32 | float32 % of peak | bfloat16 % of peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    shares = []
    for name in args.models.split(","):
        shape, classes = ((32, 32, 1), 40) if name in ("facenet", "mtcnn") else ((32, 32, 3), 43)
        flops = forward_flops(name, shape, classes)
        steps = {dtype: step_function(name, shape, classes, dtype, args.batch)
                 for dtype in ("float32", "bfloat16")}
        seconds = common.interleaved(steps, rounds=args.rounds, repeats=3, warmup=2)
        rate = {dtype: args.batch / value for dtype, value in seconds.items()}
        train = 3 * flops
        lines.append(
            f"| {name} | {flops / 1e6:.1f} | {train / 1e6:.1f} | {rate['float32']:.0f} | "
            f"{rate['bfloat16']:.0f} | {rate['bfloat16'] / rate['float32']:.2f} | "
            f"{100 * rate['float32'] * train / peak32:.1f} | "
            f"{100 * rate['bfloat16'] * train / peak16:.1f} |")
        shares.append(rate["float32"] * train / peak32)
        print(lines[-1], flush=True)
    if max(shares) > 1:
        lines += ["", f"A share above 100 % ({100 * max(shares):.0f} %) means the cores run faster "
                  "than the clock /proc/cpuinfo reports (a virtual machine shows the nominal "
                  "clock, not the boost clock), or the profiler's count overstates the work: read "
                  "the shares as relative, the images/s as measured."]
    common.record("Training precision: float32 against bfloat16", lines,
                  f"python benchmarks/precision.py --models {args.models} --batch {args.batch}")


if __name__ == "__main__":
    main()
