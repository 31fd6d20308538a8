"""Sample from a trained run: python scripts/sample.py --workdir DIR --prompt "ROMEO:" ..."""
import argparse

import _bootstrap  # noqa: F401

from gptjax.config import ConfigError, main_guard


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
    for name, value, ok in (("--max_new_tokens", a.max_new_tokens, a.max_new_tokens > 0),
                            ("--num_samples", a.num_samples, a.num_samples > 0),
                            ("--temperature", a.temperature, a.temperature >= 0),
                            ("--top_k", a.top_k, a.top_k >= 0), ("--top_p", a.top_p, 0 < a.top_p <= 1)):
        if not ok:
            raise ConfigError(f"{name}={value} is out of range")

    from gptjax.sample_text import load_run, sample_text

    exp, params, tokenizer = load_run(a.workdir)
    try:
        tokenizer.encode(a.prompt)
    except ValueError as e:
        raise ConfigError(f"the prompt cannot be encoded by this run's tokenizer: {e}") from None
    texts = sample_text(params, exp.model, tokenizer, a.prompt, a.max_new_tokens, a.num_samples,
                        a.temperature, a.top_k, a.top_p, a.seed)
    for i, text in enumerate(texts):
        print(f"---------- sample {i}\n{text}")


if __name__ == "__main__":
    main()
