"""LoRA: adapters at zero are the base model, the low-rank update lands in each kernel's own layout, only
the adapters train (frozen weights bit-identical, optimizer state only for the adapters), merge-lora
gives the same logits, and the inputs that cannot work are refused before anything is written."""
import dataclasses
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import ModelSpec, Optimizer
from gptjax.model.transformer import Transformer
from gptjax.train import lora
from helpers.tiny_runs import experiment, tiny_world
from helpers.quick import quick_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def tiny(**kw):
    spec = ModelSpec(n_layer=2, n_head=2, d_model=32, vocab_size=50, max_seq_len=16, **kw)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 16)), jnp.int32)
    return spec, x, nn.meta.unbox(Transformer(spec).init(jax.random.key(0), x)["params"])


@pytest.mark.parametrize("kw", quick_first([{}, {"flavour": "llama", "n_kv_head": 1}, {"scan_layers": True}],
                                     ids=["gpt2", "llama_gqa", "scanned"]))
def test_adapters_at_zero_are_the_base_model_and_trained_ones_are_not(kw):
    spec, x, params = tiny(**kw)
    cfg = Optimizer(lora_rank=4)
    with_adapters = lora.add_adapters(params, cfg, jax.random.key(1))
    added = {p for p in map(lora.path_text, (k for k, _ in jax.tree_util.tree_leaves_with_path(with_adapters)))
             if lora.is_adapter(p)}
    kernels = {p for p in lora.targets(params, cfg.lora_targets)}
    assert len(added) == 2 * len(kernels) and any("mlp" in k for k in kernels) and any("attn" in k for k in kernels)
    assert not any("wte" in k or "lm_head" in k or "ln" in k for k in kernels)  # default: attention and MLP only
    model = Transformer(spec)
    base = model.apply({"params": params}, x)
    np.testing.assert_array_equal(np.asarray(model.apply({"params": lora.merge(with_adapters, cfg)}, x)),
                                  np.asarray(base))
    moved = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.1 if lora.path_text(p).endswith("_lora_b") else v, with_adapters)
    assert float(jnp.max(jnp.abs(model.apply({"params": lora.merge(moved, cfg)}, x) - base))) > 1e-3


# (kernel path, shape, how the model applies it to x, x's shape)
LAYOUTS = [("h_0/mlp/wi/weight", (12, 8), "bi,oi->bo", (3, 8)),
           ("h_0/attn/qkv_kernel", (8, 3, 2, 4), "be,exyz->bxyz", (3, 8)),
           ("h_0/attn/out_kernel", (2, 4, 8), "bhd,hde->be", (3, 2, 4)),
           ("h_0/mlp/wi_kernel", (8, 2, 6), "be,esf->bsf", (3, 8)),
           ("h_0/mlp/wo/kernel", (6, 8), "bf,fe->be", (3, 6))]


@pytest.mark.parametrize("path,shape,eq,x_shape", LAYOUTS, ids=[p for p, *_ in LAYOUTS])
def test_the_update_is_x_through_a_then_b_in_each_kernel_layout(path, shape, eq, x_shape):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape).astype(np.float32)
    stacked, inputs = lora.weight_axes(path, len(shape))
    a_shape, b_shape = lora.adapter_shapes(shape, stacked, inputs, 3)
    a, b = rng.normal(size=a_shape).astype(np.float32), rng.normal(size=b_shape).astype(np.float32)
    x = rng.normal(size=x_shape).astype(np.float32)
    merged = w + lora.delta(a, b, shape, stacked, inputs)
    through = np.einsum(eq, x, w) + (x.reshape(3, -1) @ a.reshape(-1, 3) @ b.reshape(3, -1)).reshape(
        np.einsum(eq, x, w).shape)
    np.testing.assert_allclose(np.einsum(eq, x, np.asarray(merged)), through, rtol=1e-4, atol=1e-4)


def test_scanned_layers_get_adapters_of_their_own():
    shape = (2, 8, 3, 2, 4)  # [layers, width, qkv, heads, head_dim]
    stacked, inputs = lora.weight_axes("layers/attn/qkv_kernel", len(shape))
    a_shape, b_shape = lora.adapter_shapes(shape, stacked, inputs, 3)
    assert (a_shape, b_shape) == ((2, 8, 3), (2, 3, 3, 2, 4))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
    d = np.asarray(lora.delta(a, b, shape, stacked, inputs))
    for layer in range(2):
        np.testing.assert_allclose(d[layer], np.einsum("er,rxyz->exyz", a[layer], b[layer]), rtol=1e-5)


# ------------------------------------------------------------------ runs

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base run, and a rank-2 LoRA run that fine-tunes it."""
    root, text = tiny_world(tmp_path_factory, "lora")
    from gptjax.train.loop import run

    base = run(experiment(text, steps=10), root / "base", progress=False)
    exp = experiment(text, steps=6, optimizer={"lora_rank": 2, "lora_alpha": 4.0},
                     schedule={"peak_lr": 3e-2}, train={"init_from": str(root / "base")})
    tuned = run(exp, root / "lora", progress=False)
    also = dataclasses.replace(exp, optimizer=dataclasses.replace(exp.optimizer, lora_also_train=r"(bias|scale)$"))
    with_norms = run(also, root / "lora_also", progress=False)
    return {"root": root, "text": text, "base": base, "lora": tuned, "exp": exp, "also": with_norms}


def bits(x):
    return np.asarray(x).view(np.uint32)


@pytest.mark.slow
def test_only_the_adapters_train_and_the_base_stays_bit_identical(runs):
    base = {lora.path_text(k): v for k, v in jax.tree_util.tree_leaves_with_path(runs["base"].state.params)}
    tuned = {lora.path_text(k): v for k, v in jax.tree_util.tree_leaves_with_path(runs["lora"].state.params)}
    adapters = sorted(k for k in tuned if lora.is_adapter(k))
    assert adapters and set(tuned) - set(adapters) == set(base)
    for k in base:
        np.testing.assert_array_equal(bits(tuned[k]), bits(base[k]), err_msg=k)
    assert all(float(jnp.abs(tuned[k]).max()) > 0 for k in adapters if k.endswith("_lora_b"))  # B has moved
    moments = [x for x in jax.tree.leaves(runs["lora"].state.opt_state) if np.ndim(x)]
    n_adapter = sum(tuned[k].size for k in adapters)
    assert sum(x.size for x in moments) == 2 * n_adapter  # Adam's two moments, of the adapters alone


@pytest.mark.slow
def test_lora_also_train_trains_the_matched_base_parameters_and_freezes_the_rest(runs):
    base = {lora.path_text(k): v for k, v in jax.tree_util.tree_leaves_with_path(runs["base"].state.params)}
    tuned = {lora.path_text(k): v for k, v in jax.tree_util.tree_leaves_with_path(runs["also"].state.params)}
    also = sorted(k for k in base if k.endswith(("bias", "scale")))
    assert also and any("ln" in k for k in also) and any("bias" in k for k in also)
    for k in base:
        if k in also:
            assert not np.array_equal(bits(tuned[k]), bits(base[k])), k  # trained in full
        else:
            np.testing.assert_array_equal(bits(tuned[k]), bits(base[k]), err_msg=k)  # frozen
    moments = [x for x in jax.tree.leaves(runs["also"].state.opt_state) if np.ndim(x)]
    n_trained = sum(tuned[k].size for k in tuned if lora.is_adapter(k) or k in also)
    assert sum(x.size for x in moments) == 2 * n_trained


@pytest.mark.slow
def test_lora_needs_less_optimizer_memory_than_full_fine_tuning(runs):
    from gptjax.train.restore import text_example
    from gptjax.train.setup import abstract_state

    def opt_bytes(exp):
        exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, vocab_size=40))
        state = abstract_state(exp, text_example(exp))
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.opt_state))

    full = dataclasses.replace(runs["exp"], optimizer=Optimizer())
    assert opt_bytes(runs["exp"]) < 0.5 * opt_bytes(full)


@pytest.mark.slow
def test_merged_workdir_gives_the_unmerged_runs_logits_and_loss(runs, capsys):
    import convert

    from gptjax.convert.quantize import eval_loss
    from gptjax.train.restore import load_run

    out = runs["root"] / "merged"
    convert.main(["merge-lora", "--workdir", str(runs["root"] / "lora"), "--out", str(out)])
    assert "merged the rank-2 adapters" in capsys.readouterr().out
    exp, raw, tok = load_run(runs["root"] / "lora", merge_lora=False)
    assert lora.has_adapters(raw)
    merged_exp, merged, data = load_run(out, with_data=True)
    assert merged_exp.optimizer.lora_rank == 0 and not lora.has_adapters(merged)
    x = jnp.asarray([tok.encode("the cat was here")], jnp.int32)
    model = Transformer(exp.model)
    unmerged = jax.jit(lambda p: model.apply({"params": lora.merge(p, exp.optimizer)}, x))(raw)
    np.testing.assert_allclose(np.asarray(model.apply({"params": merged}, x)), np.asarray(unmerged), atol=1e-5)
    assert eval_loss(merged_exp, merged, data, merged_exp.train.eval_batches) == pytest.approx(
        runs["lora"].eval_loss, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["export_unmerged", "merge_plain", "no_match", "bad_regex", "with_freeze",
                                  "also_no_match", "also_without_rank"])
def test_what_cannot_work_exits_2_and_writes_nothing(runs, capsys, tmp_path, case):
    import convert
    import train

    text, lora_run = runs["text"], runs["root"] / "lora"
    sets = {"no_match": "optimizer.lora_targets=^nothing/", "bad_regex": "optimizer.lora_targets=attn(",
            "with_freeze": "optimizer.freeze=wte", "also_no_match": "optimizer.lora_also_train=^nothing$",
            "also_without_rank": "optimizer.lora_also_train=bias$"}.get(case)
    argv = {"export_unmerged": ["export", "--workdir", str(lora_run), "--out", str(tmp_path / "out")],
            "merge_plain": ["merge-lora", "--workdir", str(runs["root"] / "base"), "--out", str(tmp_path / "out")]
            }.get(case) or [str(ROOT / "experiments/shakespeare_char_cpu.py"), "--workdir", str(tmp_path / "out"),
                            "--no_progress",
                            *[f"--set={s}" for s in ("data.dataset=text", f"data.files={text}", "model.n_layer=1",
                                                      "mesh.cpu_devices=1", sets,
                                                      f"optimizer.lora_rank={0 if case == 'also_without_rank' else 2}")]]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        (convert if case in ("export_unmerged", "merge_plain") else train).main(argv)
    err = capsys.readouterr().err
    words = {"export_unmerged": "merge-lora", "merge_plain": "no LoRA adapters", "no_match": "matches no kernel",
             "bad_regex": "not a valid regular expression", "with_freeze": "LoRA already freezes",
             "also_no_match": "lora_also_train='^nothing$' matches no parameter",
             "also_without_rank": "optimizer.lora_rank is 0"}[case]
    assert e.value.code == 2 and err.strip().splitlines()[-1].startswith("error: ") and words in err, err
    assert not (tmp_path / "out").exists()
