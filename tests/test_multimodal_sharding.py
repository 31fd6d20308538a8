"""Encoders and projectors under sharding on 8 virtual CPU devices (a subprocess: the device
count is fixed when JAX starts).

On a 2x2x2 (data x fsdp x tensor) mesh the image MLP projector and the audio
resampler keep their shapes, their parameters are split by the logical rules,
media tokens are split by rows, the loss of a batch matches a single device,
and a sharded train step lowers it.
"""
import json
import os
import subprocess
import sys
import textwrap
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from gptjax.parallel import mesh as sharding, rules
    from gptjax.config import (AudioEncoderSpec, DigitsData, Experiment, ImageEncoderSpec, MediaSpec, Mesh, ModelSpec,
                               Schedule, Train)
    from gptjax.data.examples import Example, Layout, collate
    from gptjax.data.media_tokenizer import MediaTokenizer
    from gptjax.model.multimodal import MultimodalLM
    from gptjax.train.optim import make_optimizer
    from gptjax.train.step import compile_steps, loss_fn

    tok = MediaTokenizer(8)
    media = MediaSpec(image=ImageEncoderSpec(patch_size=4, width=16, depth=1, heads=2), image_projector="mlp",
                      audio=AudioEncoderSpec(width=16, depth=1, heads=2), audio_projector="resampler",
                      n_audio_tokens=3, resampler_heads=2)
    exp = Experiment(model=ModelSpec(n_layer=1, n_head=2, d_model=32, max_seq_len=32, vocab_size=tok.vocab_size),
                     data=DigitsData(), media=media, train=Train(batch_size=8, seed=0),
                     schedule=Schedule("constant", peak_lr=1e-3, warmup_steps=0)).validate()
    layout = Layout(seq_len=32, image_tokens=4, audio_tokens=3)
    rng = np.random.default_rng(0)
    exs = [Example(np.asarray([1] + tok.encode("<image><audio>q:") + tok.encode_text("seven") + [2], np.int32), 5,
                   [rng.random((8, 8)).astype(np.float32)], [rng.normal(size=8000).astype(np.float32)], "seven")
           for _ in range(8)]
    batch = collate(exs, layout)
    out = {}
    mesh = sharding.make_mesh(Mesh(2, 2, 2), jax.devices())
    tx, sched = make_optimizer(exp.optimizer, exp.schedule, 10)
    compiled = compile_steps(exp, exp.model, tx, sched, mesh, batch)
    state = compiled.init(jax.random.key(0))
    params0 = jax.device_get(state.params)
    gb = {k: jax.device_put(v, compiled.batch_sharding[k]) for k, v in batch.items()}
    s, c = compiled.eval_step(state.params, gb)
    sharded = [float(s / c)]
    for _ in range(2):
        state, m = compiled.train_step(state, gb)
        sharded.append(float(m["loss"]))
    p = state.params
    out["fc2_spec"] = str(tuple(p["image_projector"]["fc2"]["kernel"].sharding.spec))
    out["fc2_shard"] = list(p["image_projector"]["fc2"]["kernel"].addressable_shards[0].data.shape)
    out["q_spec"] = str(tuple(p["audio_projector"]["q_kernel_0"].sharding.spec))
    out["q_shard"] = list(p["audio_projector"]["q_kernel_0"].addressable_shards[0].data.shape)
    model = MultimodalLM(exp.model, media)
    with rules.activation_rules(mesh):
        for key, modality in (("images", "image"), ("audio", "audio")):
            y = jax.jit(lambda prm, x, modality=modality: model.apply(
                {"params": prm}, modality, x, method="media_tokens"))(p, gb[key])
            out[modality + "_tokens"] = list(y.shape)
            out[modality + "_rows_per_shard"] = y.addressable_shards[0].data.shape[0]
    # the same parameters and batch on one device, through the plain loss
    single = jax.jit(lambda prm, b: loss_fn(prm, b, model, jax.random.key(0))[0])
    losses = {"2x2x2": sharded, "1x1x1": float(single(params0, batch))}
    out["losses"] = losses
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_projectors_and_encoders_shard_over_eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["image_tokens"] == [8, 4, 32] and out["audio_tokens"] == [8, 3, 32]
    assert out["image_rows_per_shard"] == 2 and out["audio_rows_per_shard"] == 2  # 8 rows over data x fsdp = 4
    assert out["fc2_spec"] == "('tensor', 'fsdp')" and out["fc2_shard"] == [16, 16]
    assert out["q_spec"] == "('fsdp', 'tensor', None)" and out["q_shard"] == [16, 1, 16]
    sharded, single = out["losses"]["2x2x2"], out["losses"]["1x1x1"]
    assert abs(sharded[0] - single) < 1e-4 and abs(sharded[1] - single) < 1e-4, (sharded, single)
    assert sharded[2] < sharded[1]  # the sharded step learned something
