"""Convert checkpoints between Hugging Face and gptjax, and print a run's logits.

    python scripts/convert.py import --from hf --dir HF_DIR --out WORKDIR
    python scripts/convert.py export --workdir WORKDIR --to hf --out HF_DIR
    python scripts/convert.py logits --workdir WORKDIR --ids 3,1,4,1,5     (or --text "Hello")
    python scripts/convert.py merge-lora --workdir LORA_RUN --out WORKDIR
    python scripts/convert.py average --workdir RUN --last 3 --out WORKDIR   (or --steps 1000,1500)

Import reads GPT-2 and LLaMA-family folders (config.json + model.safetensors or
sharded safetensors; no PyTorch needed) and writes a workdir that scripts/train.py
fine-tunes (see WORKDIR/experiment.py) and scripts/sample.py samples from.
Anything that cannot be converted exactly is refused, exit status 2, nothing written.
"""
import argparse
import json

import _bootstrap  # noqa: F401

from gptjax.cli import main_guard, step_list


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="a Hugging Face folder -> a new gptjax workdir")
    imp.add_argument("--from", dest="source", choices=["hf"], default="hf")
    imp.add_argument("--dir", required=True, help="Hugging Face model folder (config.json, *.safetensors, tokenizer)")
    imp.add_argument("--out", required=True, help="the new workdir (must not exist, or be empty)")
    exp = sub.add_parser("export", help="a gptjax workdir's newest checkpoint -> a Hugging Face folder")
    exp.add_argument("--workdir", required=True)
    exp.add_argument("--to", choices=["hf"], default="hf")
    exp.add_argument("--out", required=True, help="the new Hugging Face folder (must not exist, or be empty)")
    lg = sub.add_parser("logits", help="print fp32 logits of a workdir's model as JSON")
    lg.add_argument("--workdir", required=True)
    src = lg.add_mutually_exclusive_group(required=True)
    src.add_argument("--ids", help="comma-separated token ids, e.g. 3,1,4,1,5")
    src.add_argument("--text", help="text, encoded with the run's tokenizer")
    mg = sub.add_parser("merge-lora", help="a LoRA run -> a plain workdir with the adapters folded in")
    mg.add_argument("--workdir", required=True)
    mg.add_argument("--out", required=True, help="the new workdir (must not exist, or be empty)")
    av = sub.add_parser("average", help="a run's last checkpoints -> a workdir holding their mean parameters")
    av.add_argument("--workdir", required=True)
    which = av.add_mutually_exclusive_group(required=True)
    which.add_argument("--steps", type=step_list, help="comma-separated saved steps, e.g. 1000,1500")
    which.add_argument("--last", type=int, help="the newest K checkpoints")
    av.add_argument("--out", required=True, help="the new workdir (must not exist, or be empty)")
    return p.parse_args(argv)



@main_guard
def main(argv=None):
    a = parse_args(argv)
    if a.command == "import":
        from gptjax.convert.hf import import_hf

        model = import_hf(a.dir, a.out)
        s = model.spec
        print(f"imported {model.model_type} ({s.n_layer} layers, d_model {s.d_model}, {s.n_head} heads"
              f"{f', {s.n_kv_head} kv heads' if s.n_kv_head else ''}, vocab {s.vocab_size}, "
              f"{'tied' if s.tie_embeddings else 'untied'} embeddings; tokenizer {model.tokenizer.name}) "
              f"into {a.out}\nfine-tune: python scripts/train.py {a.out}/experiment.py --workdir RUN_DIR "
              "--set data.files=YOUR_TEXT")
    elif a.command == "export":
        from gptjax.convert.hf import export_hf

        for note in export_hf(a.workdir, a.out):
            print(note)
        print(f"exported {a.workdir} to {a.out}")
    elif a.command == "merge-lora":
        from gptjax.convert.lora_merge import merge_lora_workdir

        print(merge_lora_workdir(a.workdir, a.out))
    elif a.command == "average":
        from gptjax.convert.average import average_workdir

        print(average_workdir(a.workdir, a.out, a.steps, a.last))
    else:
        from gptjax.convert.logits import workdir_logits

        print(json.dumps(workdir_logits(a.workdir, a.ids, a.text)))


if __name__ == "__main__":
    main()
