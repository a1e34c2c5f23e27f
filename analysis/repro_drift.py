"""Study 2: reproducibility drift of a small LM across batch size, split-K, GPU tensor-core
profiles and precision (bf16 / fp16 / fp32 / LayerCast).

Paper: "Give Me FP32 or Give Me Death? Challenges and Solutions for Reproducible Reasoning"
(Yuan et al., 2025). Claims: under bf16, greedy outputs of the same model diverge across
batch size / GPU count / GPU type (large Std@Acc, early Div_Index); fp16 drifts less; fp32
is nearly stable; LayerCast (16-bit stored weights, fp32 compute) is close to fp32.

Each config here is one emulation policy (``fpsim.torch``): the precision's profile
(``bf16``, ``fp16``, ``fp32``, ``layercast``) with a bit-exact accumulation model for every
GEMM. Batch size acts, as on a GPU, through the GEMM's reduction split: batch 1 ->
sequential fp32 (fma), batch 4 -> split-K in chunks of 32, batch 16 -> chunks of 16
(``fpsim.accum.Blocked``); the GPU configs use the A100 / H100 tensor-core models
(``fpsim.hardware.tensor_core``) for 16-bit inputs, and for fp32/LayerCast (CUDA-core fp32
GEMMs) a pairwise or 8-way blocked fp32 order. A tiny GPT trained on a synthetic Markov
language greedy-decodes the same prompts under every config; ``fpsim.analysis.drift``
computes Std@Acc, the per-example length std, Div_Index, the std of top-1 probabilities
before divergence and logit differences. Run::

    python analysis/repro_drift.py --out docs/studies/repro_drift [--smoke]
"""

from __future__ import annotations

from _common import MarkovText, Report, command_line, parse_args, trained_gpt

import fpsim

TITLE = "Reproducibility drift across batch size, split-K, GPU and precision"
PAPER = ("Yuan et al., *Give Me FP32 or Give Me Death? Challenges and Solutions for Reproducible "
         "Reasoning*, arXiv:2506.09501 (2025)")

PRECISIONS = ("bf16", "fp16", "fp32", "layercast")
SETUPS = ("bs=1", "bs=4", "bs=16", "A100", "H100")


def accum_model(precision, setup):
    A = fpsim.accum
    seq = A.Sequential("fp32", fma=True)
    half = precision in ("bf16", "fp16")
    if setup == "bs=1":
        return seq
    if setup == "bs=4":
        return A.Blocked(32, seq)
    if setup == "bs=16":
        return A.Blocked(16, seq)
    if half:
        return fpsim.hardware.tensor_core(setup, precision)
    return A.Pairwise("fp32") if setup == "A100" else A.Blocked(8, seq)


def policy(precision, setup):
    from fpsim.torch import profiles
    p = profiles.get(precision)
    return p.replace(accum=accum_model(precision, setup), name=f"{precision}/{setup}")


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv, "docs/studies/repro_drift")
    rep = Report(args.out, TITLE, PAPER, command_line("repro_drift.py", argv), args.smoke)
    rep.add(__doc__.split("\n\n", 2)[2].rsplit("Run::", 1)[0])
    from fpsim.analysis import drift, greedy_runner

    # Near-ties, as in long reasoning outputs: each context has two likely continuations
    # (0.55 / 0.45), so small logit differences can flip a greedy choice.
    text = MarkovText(vocab=24, p_main=0.55, alts=1, seed=args.seed)
    n_prompts, new = (3, 3) if args.smoke else (32, 12)
    model, losses = trained_gpt(text, 30 if args.smoke else 500, d=32 if args.smoke else 64,
                                ctx=32, seed=args.seed)
    prompts = text.sample(n_prompts, 8, seed=args.seed + 11)
    truth = [text.greedy(p, new) for p in prompts]
    answer = min(3, new)

    def judge(i, toks):
        return list(toks[:answer]) == truth[i][:answer]

    runner = greedy_runner(model, prompts, max_new_tokens=new)
    # Emulated GEMM rows are independent, so every config decodes all prompts as one batch:
    # the batch size acts through the reduction split of the accumulation model only.
    configs = {}
    setups = ("bs=1", "H100") if args.smoke else SETUPS
    precisions = ("bf16", "fp32") if args.smoke else PRECISIONS
    for prec in precisions:
        for s in setups:
            configs[f"{prec}/{s}"] = {"precision": policy(prec, s), "batch_size": n_prompts,
                                      "group": prec}
    report = drift(runner, configs, judge=judge, group_by="group")
    rows = report.to_records()
    rep.add("Language: synthetic order-2 Markov chain with near-ties (each context: one "
            "continuation with probability 0.55, another with 0.45), so that, as in long "
            "reasoning traces, the top-2 logits are often close. "
            f"Model: GPT d={32 if args.smoke else 64}, trained {len(losses)} steps (final loss "
            f"{losses[-5:].mean():.3f}, entropy floor {text.entropy():.3f}); {n_prompts} prompts "
            f"of 8 tokens, {new} greedy tokens; an answer is correct when its first {answer} tokens "
            f"equal the true most likely continuation. {len(configs)} configs "
            f"({len(setups)} per precision: {', '.join(setups)}). All prompts are decoded as one "
            "batch in every config: emulated GEMM rows are independent, so batch size acts "
            "through the reduction split of the accumulation model, as in the paper's kernels.")
    cols = ["group", "configs", "mean_acc", "std_acc", "avg_std_len", "div_rate", "avg_div_index",
            "std_top1_prob", "max_logit_diff", "mean_logit_diff", "flip_rate"]
    rep.table(rows, cols, caption="Drift per precision (fpsim.analysis.drift)")
    rep.table(report.config_records(), caption="Per config (logit differences vs the group's first config)")
    rep.results = {"groups": rows, "configs": report.config_records()}
    rep.figure(report.plot(), "drift", "Drift metrics per precision")

    g = {r["group"]: r for r in rows}

    def val(p, k):
        v = g.get(p, {}).get(k)
        return 0.0 if v is None else v

    if args.smoke:
        rep.add("Smoke size: only bf16 and fp32, two setups each; the fp16 and LayerCast "
                "verdicts below have no data (0) in this size.")

    bf, fp = val("bf16", "max_logit_diff"), val("fp32", "max_logit_diff")
    def verdict(claim, paper, prec, ok):
        if prec not in g:
            rep.verdict(claim, paper, f"{prec}: not run at this size", "not run")
            return
        rep.verdict(claim, paper, f"{prec}: divergent examples {100 * val(prec, 'div_rate'):.0f}%, "
                    f"Std@Acc {100 * val(prec, 'std_acc'):.2f}%, max |Δlogit| "
                    f"{val(prec, 'max_logit_diff'):.3g}", ok)

    bf, fp = val("bf16", "max_logit_diff"), val("fp32", "max_logit_diff")
    verdict("bf16 greedy outputs diverge across configs",
            "large Std@Acc, many divergent examples under bf16", "bf16",
            True if val("bf16", "div_rate") > 0 else ("partly: logits differ, tokens do not" if bf > 0 else False))
    verdict("fp16 drifts less than bf16", "fp16 more stable than bf16 (more mantissa bits)", "fp16",
            val("fp16", "div_rate") <= val("bf16", "div_rate") and val("fp16", "max_logit_diff") <= bf)
    verdict("fp32 nearly stable", "near-zero divergence in fp32", "fp32",
            val("fp32", "div_rate") <= 0.05 and fp < 1e-4)
    verdict("LayerCast close to fp32", "LayerCast ≈ fp32 stability", "layercast",
            val("layercast", "div_rate") <= val("fp32", "div_rate") + 0.05
            and val("layercast", "max_logit_diff") < 1e-3)
    rep.add("Reading: the logit drift is ordered as in the paper (bf16 > fp16 >> fp32 ≈ "
            "LayerCast), but in a 2-layer model over a few hundred greedy decisions the bf16 "
            "logit differences are usually far smaller than the top-2 gaps, so tokens rarely "
            "flip; the paper's divergences come from deep models and thousands of tokens, "
            "where one flip changes everything after it.")
    rep.write()
    return rep


if __name__ == "__main__":
    main()
