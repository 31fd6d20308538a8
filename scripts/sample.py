"""Sample from a trained run: python scripts/sample.py --workdir DIR --prompt "ROMEO:" ..."""
import argparse

import _bootstrap  # noqa: F401

from gptjax.cli import doing, main_guard, require


@main_guard
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", required=True)
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--num_samples", type=int, default=1)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=0, help="0 = no top-k cut")
    p.add_argument("--top_p", type=float, default=1.0, help="1 = no nucleus cut")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    require(max_new_tokens=(a.max_new_tokens, a.max_new_tokens > 0, "a positive number"),
            num_samples=(a.num_samples, a.num_samples > 0, "a positive number"),
            temperature=(a.temperature, a.temperature >= 0, "0 (greedy) or more"),
            top_k=(a.top_k, a.top_k >= 0, "0 (no cut) or more"),
            top_p=(a.top_p, 0 < a.top_p <= 1, "a number in (0, 1]"))

    from gptjax.model.decode import sample_text
    from gptjax.train.restore import load_run

    with doing(f"restoring {a.workdir}"):
        exp, params, tokenizer = load_run(a.workdir)
    for i, text in enumerate(sample_text(params, exp.model, tokenizer, a.prompt, a.max_new_tokens, a.num_samples,
                                         a.temperature, a.top_k, a.top_p, a.seed)):
        print(f"---------- sample {i}\n{text}")


if __name__ == "__main__":
    main()
