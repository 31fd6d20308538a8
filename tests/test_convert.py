"""Hugging Face interop (gptjax.convert, scripts/convert.py): parity against transformers itself.

Tiny random GPT-2 and LLaMA models (GQA, tied and untied) are built with
transformers, saved with save_pretrained and imported; logits, greedy decoding,
exported folders and tokenizers are compared with what transformers computes.
Conversion itself needs only requirements.txt (safetensors, tokenizers); the references,
transformers and CPU torch, come with the test install (requirements-interop.txt, installed by
scripts/test.sh, which stops if they cannot be): without them these tests fail, not skip.
"""
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tokenizers as hf_tokenizers
import torch
import transformers

import jax
import jax.numpy as jnp

from gptjax.config import resolve_experiment
from gptjax.convert import ConversionError
from gptjax.convert.hf import export_hf, import_hf, read_hf
from gptjax.convert.hf_tokenizer import load_hf_tokenizer
from gptjax.data.tokenizers import (GPT2BPETokenizer, SentencePieceTokenizer, load_tokenizer,
                                    train_sentencepiece)
from gptjax.model.decode import generate
from gptjax.model.transformer import Transformer
from gptjax.train.restore import load_run
from helpers.quick import quick_first
from helpers.sonnets import SONNET_18_OPENING

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "convert.py"
TEXT = SONNET_18_OPENING
PROBES = ["Shall I compare thee", "  two  spaces\n\nand newlines\t", "café naïve — ünïcödé 12345",
          "fair<|endoftext|>summer", ""]
IDS_BxL = np.array([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5]])


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A GPT-2 format vocab.json + merges.txt, trained by the tokenizers library on TEXT."""
    out = tmp_path_factory.mktemp("bpe")
    tok = hf_tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator([TEXT], vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False)
    tok.save_model(str(out))
    return out


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    """A SentencePiece model (LLaMA's tokenizer kind), trained on TEXT."""
    prefix = tmp_path_factory.mktemp("sp") / "sp"
    train_sentencepiece([TEXT], prefix, vocab_size=300)
    return pathlib.Path(f"{prefix}.model")


def _randomize(model, seed):
    """Weights far from init (std 0.3), so every layer moves the logits and a wrong mapping shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


CASES = {
    "gpt2_tied": lambda v: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=v, n_positions=64, bos_token_id=0, eos_token_id=0)),
    "gpt2_untied": lambda v: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, n_inner=80, vocab_size=v, n_positions=64, layer_norm_epsilon=1e-6,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)),
    "llama_gqa_untied": lambda v: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=v + 3, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=5e5, rms_norm_eps=1e-5)),
    "llama_mha_tied": lambda v: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=v, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=True)),
}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory, bpe_dir, sp_model):
    """case -> (HF folder with weights and tokenizer, the transformers model)."""
    bpe_vocab = GPT2BPETokenizer(bpe_dir / "vocab.json", bpe_dir / "merges.txt").vocab_size
    sp_vocab = SentencePieceTokenizer(sp_model).vocab_size
    made = {}
    for i, (case, build) in enumerate(CASES.items()):
        model = _randomize(build(bpe_vocab if case.startswith("gpt2") else sp_vocab), i)
        out = tmp_path_factory.mktemp(case)
        model.save_pretrained(out)
        if case.startswith("gpt2"):
            for name in ("vocab.json", "merges.txt"):
                shutil.copy(bpe_dir / name, out / name)
        else:
            shutil.copy(sp_model, out / "tokenizer.model")
        made[case] = (out, model)
    return made


def hf_logits(model, ids_BxL):
    with torch.no_grad():
        return model(torch.tensor(ids_BxL)).logits.numpy()


def our_logits(spec, params, ids_BxL):
    return np.asarray(Transformer(spec).apply({"params": params}, jnp.asarray(ids_BxL, jnp.int32)))


def load_cli():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gptjax_convert_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ parity

@pytest.mark.parametrize("case", quick_first(list(CASES)))
def test_imported_logits_match_transformers(hf_dirs, case):
    hf_dir, model = hf_dirs[case]
    m = read_hf(hf_dir)
    cfg = model.config
    assert m.spec.tie_embeddings == bool(cfg.tie_word_embeddings)
    assert ("lm_head" in m.params) != m.spec.tie_embeddings
    if case == "llama_gqa_untied":
        assert (m.spec.n_kv_head, m.spec.rope_theta, m.spec.norm_eps) == (2, 5e5, 1e-5)
        assert "kv_kernel" in m.params["h_0"]["attn"]
    theirs = hf_logits(model, IDS_BxL)
    assert np.abs(theirs).max() > 1.0  # logits big enough for a wrong mapping to show
    ours = our_logits(m.spec, m.params, IDS_BxL)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize("case", quick_first(list(CASES)))
def test_export_round_trips_bit_exactly_and_loads_in_transformers(hf_dirs, tmp_path, case):
    hf_dir, model = hf_dirs[case]
    import_hf(hf_dir, tmp_path / "wd")
    exp, params, tokenizer = load_run(tmp_path / "wd")
    export_hf(tmp_path / "wd", tmp_path / "out")
    again = read_hf(tmp_path / "out")
    assert again.spec == exp.model
    flat = jax.tree_util.tree_leaves_with_path(params)
    flat_again = dict(jax.tree_util.tree_leaves_with_path(again.params))
    assert len(flat) == len(flat_again)
    for path, leaf in flat:
        assert np.array_equal(np.asarray(leaf), flat_again[path]), jax.tree_util.keystr(path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reloaded) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    assert np.abs(hf_logits(reloaded, IDS_BxL) - our_logits(exp.model, params, IDS_BxL)).max() <= 1e-4


@pytest.mark.parametrize("case", quick_first(["gpt2_untied", "llama_gqa_untied"]))
def test_greedy_generation_matches_transformers(hf_dirs, case):
    hf_dir, model = hf_dirs[case]
    m = read_hf(hf_dir)
    prompt_BxP = IDS_BxL[:, :6]
    n_new = 24
    ours = np.asarray(generate(jax.tree.map(jnp.asarray, m.params), m.spec, prompt_BxP, n_new,
                               jax.random.key(0), temperature=0.0))
    with torch.no_grad():
        theirs = model.generate(torch.tensor(prompt_BxP), attention_mask=torch.ones(prompt_BxP.shape, dtype=torch.long),
                                max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0).numpy()
    assert ours.shape == (2, 6 + n_new)
    assert ours.tolist() == theirs.tolist()
    assert len(set(ours[:, 6:].ravel().tolist())) >= 3, ours  # not a degenerate repeat of one token


def test_sharded_and_bf16_checkpoints_import(hf_dirs, tmp_path):
    hf_dir, model = hf_dirs["llama_gqa_untied"]
    single = read_hf(hf_dir)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    shutil.copy(hf_dir / "tokenizer.model", tmp_path / "sharded")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 2
    sharded = read_hf(tmp_path / "sharded")
    assert jax.tree.all(jax.tree.map(np.array_equal, single.params, sharded.params))

    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    model.to(torch.float32)
    shutil.copy(hf_dir / "tokenizer.model", tmp_path / "bf16")
    bf16 = read_hf(tmp_path / "bf16")
    emb = bf16.params["wte"]["embedding"]
    assert emb.dtype == np.float32
    want = model.model.embed_tokens.weight.detach().to(torch.bfloat16).to(torch.float32).numpy()
    assert np.array_equal(emb, want) and not np.array_equal(emb, single.params["wte"]["embedding"])


# ------------------------------------------------------------------ tokenizers

def test_gpt2_bpe_tokenizer_matches_transformers(bpe_dir, tmp_path):
    ours = GPT2BPETokenizer(bpe_dir / "vocab.json", bpe_dir / "merges.txt")
    theirs = transformers.GPT2TokenizerFast.from_pretrained(bpe_dir)
    assert ours.eos_id == theirs.eos_token_id is not None
    for text in PROBES:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == text
    assert ours.encode("fair<|endoftext|>")[-1] == ours.eos_id
    ours.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.name == "gpt2_bpe" and loaded.fingerprint() == ours.fingerprint()
    assert [loaded.encode(t) for t in PROBES] == [ours.encode(t) for t in PROBES]
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "tok" / name).read_bytes() == (bpe_dir / name).read_bytes()
    # transformers 5 saves only tokenizer.json: it is read back as the same BPE
    theirs.save_pretrained(tmp_path / "hf5")
    assert not (tmp_path / "hf5" / "merges.txt").exists()
    from_json = load_hf_tokenizer(tmp_path / "hf5")
    assert [from_json.encode(t) for t in PROBES] == [theirs(t)["input_ids"] for t in PROBES]


def test_tokenizers_travel_into_and_out_of_the_workdir(hf_dirs, tmp_path):
    llama_dir, _ = hf_dirs["llama_mha_tied"]
    import_hf(llama_dir, tmp_path / "wd")
    sp_bytes = (llama_dir / "tokenizer.model").read_bytes()
    assert (tmp_path / "wd" / "tokenizer" / "tokenizer.model").read_bytes() == sp_bytes
    assert load_tokenizer(tmp_path / "wd" / "tokenizer").name == "sentencepiece"
    export_hf(tmp_path / "wd", tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == sp_bytes

    gpt2_dir, _ = hf_dirs["gpt2_tied"]
    import_hf(gpt2_dir, tmp_path / "wd2")
    export_hf(tmp_path / "wd2", tmp_path / "out2")
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "out2")
    ours = load_tokenizer(tmp_path / "wd2" / "tokenizer")
    assert [auto(t)["input_ids"] for t in PROBES] == [ours.encode(t) for t in PROBES]


# ------------------------------------------------------------------ command line and refusals

@pytest.mark.slow
def test_cli_import_logits_export(hf_dirs, tmp_path):
    hf_dir, model = hf_dirs["gpt2_untied"]
    wd = tmp_path / "wd"
    run = [sys.executable, str(SCRIPT)]
    imp = subprocess.run(run + ["import", "--from", "hf", "--dir", str(hf_dir), "--out", str(wd)],
                         capture_output=True, text=True, timeout=300)
    assert imp.returncode == 0, imp.stderr
    assert "imported gpt2" in imp.stdout
    for name in ("config.json", "experiment.py", "tokenizer/tokenizer.json", "checkpoints/0"):
        assert (wd / name).exists(), name
    lg = subprocess.run(run + ["logits", "--workdir", str(wd), "--ids", "3,1,4,1,5"],
                        capture_output=True, text=True, timeout=300)
    assert lg.returncode == 0, lg.stderr
    out = json.loads(lg.stdout)
    assert out["ids"] == [3, 1, 4, 1, 5]
    logits = np.asarray(out["logits"], np.float32)
    assert logits.shape == (5, model.config.vocab_size)
    assert np.abs(logits - hf_logits(model, [[3, 1, 4, 1, 5]])[0]).max() <= 1e-4

    cli = load_cli()
    cli.main(["export", "--workdir", str(wd), "--to", "hf", "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as e:  # never over an existing folder
        cli.main(["export", "--workdir", str(wd), "--to", "hf", "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:  # an id outside the vocabulary
        cli.main(["logits", "--workdir", str(wd), "--ids", f"1,{model.config.vocab_size}"])
    assert e.value.code == 2


def _edit_checkpoint(src, dst, edit_tensors=None, edit_config=None):
    from safetensors.numpy import load_file, save_file
    shutil.copytree(src, dst)
    if edit_tensors:
        tensors = edit_tensors(load_file(dst / "model.safetensors"))
        save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    if edit_config:
        cfg = json.loads((dst / "config.json").read_text())
        edit_config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _drop(name):
    return lambda t: {k: v for k, v in t.items() if k != name}


REFUSALS = {
    "missing": (dict(edit_tensors=_drop("model.layers.1.mlp.up_proj.weight")), "layers.1.mlp.up_proj.weight"),
    "shape": (dict(edit_tensors=lambda t: {**t, "model.norm.weight": np.ones(31, np.float32)}), "norm.weight"),
    "unexpected": (dict(edit_tensors=lambda t: {**t, "model.layers.0.self_attn.q_proj.bias": np.ones(32, np.float32)}),
                   "layers.0.self_attn.q_proj.bias"),
    "model_type": (dict(edit_config=lambda c: c.update(model_type="mistral")), "mistral"),
    "rope_scaling": (dict(edit_config=lambda c: c.update(rope_scaling={"rope_type": "llama3", "factor": 8.0})),
                     "llama3"),
    "attention_bias": (dict(edit_config=lambda c: c.update(attention_bias=True)), "attention_bias"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_cli_refuses_mismatches_before_writing(hf_dirs, tmp_path, capsys, case):
    edits, named = REFUSALS[case]
    bad = _edit_checkpoint(hf_dirs["llama_gqa_untied"][0], tmp_path / "bad", **edits)
    with pytest.raises(SystemExit) as e:
        load_cli().main(["import", "--from", "hf", "--dir", str(bad), "--out", str(tmp_path / "wd")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert named in err and err.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no workdir, no hidden temp folder


def test_export_refuses_line_local_layers_which_hugging_face_models_lack(hf_dirs, tmp_path):
    import_hf(hf_dirs["gpt2_tied"][0], tmp_path / "wd")
    cfg = json.loads((tmp_path / "wd" / "config.json").read_text())
    cfg["model"].update(line_local_layers=1, line_break_id=10)
    (tmp_path / "wd" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="line-local layers"):
        export_hf(tmp_path / "wd", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_used_workdir(hf_dirs, tmp_path):
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "keep.txt").write_text("x")
    with pytest.raises(ConversionError, match="not empty"):
        import_hf(hf_dirs["gpt2_tied"][0], tmp_path / "wd")


# ------------------------------------------------------------------ fine-tuning the import

@pytest.mark.slow
def test_generated_experiment_fine_tunes_from_the_imported_weights(hf_dirs, tmp_path, monkeypatch):
    from gptjax.train.loop import run

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    hf_dir, _ = hf_dirs["gpt2_tied"]
    wd = tmp_path / "wd"
    import_hf(hf_dir, wd)
    _, imported, _ = load_run(wd)
    (tmp_path / "ft.txt").write_text(TEXT * 8)
    # the command: train in the imported workdir itself (resumes step 0)
    exp = resolve_experiment(wd / "experiment.py", [
        f"data.files={tmp_path / 'ft.txt'}", "train.steps=3", "train.batch_size=2", "train.eval_every=3",
        "train.eval_batches=1", "train.sample_tokens=0", "train.checkpoint_every=0"])
    result = run(exp, wd, progress=False)
    assert sorted(result.losses) == [0, 1, 2] and all(np.isfinite(list(result.losses.values())))
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), result.state.params, imported)
    biggest = max(jax.tree.leaves(moved))
    assert 0 < biggest < 1e-2  # a few small steps away from the imported weights, not from a fresh init
    assert load_run(wd)[0].data.tokenizer == "gpt2_bpe"  # the fine-tuned run reads back for sampling

    # or into a new workdir: train.init_from (set by the import) supplies weights and tokenizer
    exp = resolve_experiment(wd / "experiment.py", [
        f"data.files={tmp_path / 'ft.txt'}", "train.steps=1", "train.batch_size=2", "train.eval_every=1",
        "train.eval_batches=1", "train.sample_tokens=0", "train.checkpoint_every=0"])
    assert exp.train.init_from == str(wd.absolute())
    result = run(exp, tmp_path / "new", progress=False)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), result.state.params, imported)
    assert max(jax.tree.leaves(moved)) < 1e-2
    assert load_tokenizer(tmp_path / "new" / "tokenizer").fingerprint() == load_tokenizer(wd / "tokenizer").fingerprint()
