"""Training-step benchmark: longreward's shared-prefix DPO+CE step vs TRL's DPOTrainer.

Same random-init model (Qwen2.5-1.5B-shaped config), same pairs (random token prompts of P tokens,
answers of 512), batch 1, bf16, gradient checkpointing, reference log-probs precomputed.

    python benchmarks/train_step.py                       # H100: 8k/16k/32k, ours vs TRL
    python benchmarks/train_step.py --attention all       # every shared-prefix backend
    python benchmarks/train_step.py --attention-only      # attention kernels alone, fwd+bwd
    python benchmarks/train_step.py --find-max            # longest prompt that fits, each side
    python benchmarks/train_step.py --tiny                # CPU smoke run (tiny model, short prompts)

Tokens/s counts the *unique* tokens of a pair, P + C + R, for both sides, so the ratio column
is simply TRL step time / our step time. MFU uses model FLOPs (6·N·tokens for the matmuls, no
recomputation counted, plus causal attention) of *our* layout against --peak-tflops.

TRL is imported here only, never by longreward; without it the TRL column is skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from longreward.train.attention import (  # noqa: E402
    register_shared_prefix_attention,
    resolve_backend,
)
from longreward.train.data import TokenizedPair  # noqa: E402
from longreward.train.logprobs import answer_logps  # noqa: E402
from longreward.train.loss import dpo_ce_loss  # noqa: E402
from longreward.train.packing import pack_pairs  # noqa: E402
from longreward.train.trainer import enable_checkpointing  # noqa: E402

QWEN25_15B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  use_sliding_window=False)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
            tie_word_embeddings=True, use_sliding_window=False)
TRL_REFERENCE = {8192: (0.60, 13.9), 16384: (1.31, 16.4), 32768: (3.29, 23.3)}  # s/step, GiB (issue)


def build_model(shape: dict[str, Any], dtype: torch.dtype, device: torch.device,
                attn: str | None = None) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(**shape)
    if attn:
        cfg._attn_implementation = attn
    return Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype)


def make_pair(P: int, A: int, vocab: int, seed: int = 0) -> TokenizedPair:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (P + 2 * A,), generator=g).tolist()
    return TokenizedPair(ids[:P], ids[P : P + A], ids[P + A :], f"bench-{P}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_mem(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def model_flops(shape: dict[str, Any], P: int, A: int) -> float:
    """Model FLOPs of one fwd+bwd of our packed step (no recomputation counted)."""
    h, L = shape["hidden_size"], shape["num_hidden_layers"]
    hd = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    per_tok = L * (2 * h * h + 2 * h * kv + 3 * h * shape["intermediate_size"])  # q,o,k,v,mlp
    T = P + 2 * A
    dense = 6 * per_tok * T
    pairs = (P + A) * (P + A + 1) / 2 + A * P + A * (A + 1) / 2  # attended (q, k) pairs
    attn = 12 * h * pairs * L  # QKᵀ and PV, fwd (4·d) + bwd (8·d)
    head = 6 * h * shape["vocab_size"] * 2 * A
    return dense + attn + head


# -- our step -----------------------------------------------------------------------------------


def our_step_bench(shape: dict[str, Any], P: int, A: int, backend: str, steps: int, warmup: int,
                   device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    reset_mem(device)
    model = build_model(shape, dtype, device, register_shared_prefix_attention())
    model.config.use_cache = False
    enable_checkpointing(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    batch = pack_pairs([make_pair(P, A, shape["vocab_size"])]).to(device)
    ref = torch.tensor([-1000.0], device=device)  # precomputed reference: values do not affect cost
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for i in range(warmup + steps):
        sync(device)
        t = time.perf_counter()
        with autocast:
            lp = answer_logps(model, batch, backend)
            out = dpo_ce_loss(lp.chosen, lp.rejected, ref, ref, lp.chosen_tokens, 0.15, 0.1)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    res = {"step_s": sorted(times)[len(times) // 2], "peak_gib": peak_gib(device)}
    del model, opt, batch
    reset_mem(device)
    return res


# -- TRL ----------------------------------------------------------------------------------------


def trl_step_bench(shape: dict[str, Any], P: int, A: int, steps: int, warmup: int,
                   device: torch.device, dtype: torch.dtype, workdir: Path) -> dict[str, Any]:
    """TRL DPOTrainer, configured like our step. Raises ImportError without TRL."""
    import trl
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, TrainerCallback

    reset_mem(device)
    vocab = shape["vocab_size"]
    # A word-level tokenizer whose word "tN" is token N, so TRL sees exactly our token ids.
    # Special tokens get names that are no substring of a word: tokenizers match special
    # tokens before splitting words, so an unk named "t3" would cut "t335" into pieces.
    names = {i: f"t{i}" for i in range(vocab)} | {0: "<pad>", 1: "<eos>", 3: "<unk>"}
    tk = Tokenizer(models.WordLevel({w: i for i, w in names.items()}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>")
    pair = make_pair(P, A, vocab)
    text = lambda ids: " ".join(names[i] for i in ids)  # noqa: E731
    # The prompt ends with a space so that prompt + completion splits at the same boundary
    # (TRL checks that the tokenized prompt is a prefix of prompt + completion).
    ds = Dataset.from_list([{"prompt": text(pair.prompt_ids) + " ",
                             "chosen": text(pair.chosen_ids[:-1]),
                             "rejected": text(pair.rejected_ids[:-1])}] * (warmup + steps))
    n_prompt = len(tok(text(pair.prompt_ids) + " ")["input_ids"])
    if n_prompt != len(pair.prompt_ids):  # both sides must see the same token counts
        raise RuntimeError(f"TRL tokenizer gives {n_prompt} prompt tokens, expected "
                           f"{len(pair.prompt_ids)}")
    model = build_model(shape, dtype, device, "sdpa")
    args = trl.DPOConfig(
        output_dir=str(workdir / f"trl-{P}"), per_device_train_batch_size=1,
        gradient_accumulation_steps=1, learning_rate=1e-6, beta=0.15,
        loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.1], precompute_ref_log_probs=True,
        gradient_checkpointing=True, bf16=device.type == "cuda", max_length=P + A + 8,
        max_steps=warmup + steps, logging_steps=1000, save_strategy="no", report_to=[],
        dataloader_num_workers=0, seed=0)

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.t = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            sync(device)
            self.t = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            sync(device)
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[timer])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    times = timer.times[warmup:] or timer.times
    res = {"step_s": sorted(times)[len(times) // 2], "peak_gib": peak_gib(device),
           "trl_version": trl.__version__}
    del trainer, model
    reset_mem(device)
    return res


# -- attention only -----------------------------------------------------------------------------


def attention_only_bench(P: int, A: int, device: torch.device, dtype: torch.dtype, steps: int,
                         Hq: int = 12, Hkv: int = 2, D: int = 128) -> dict[str, float]:
    """fwd+bwd seconds of the attention alone: two ordinary sequences vs shared-prefix backends."""
    from longreward.train.attention import shared_prefix_attention
    from longreward.train.packing import Segments, SharedPrefixSpec

    F = torch.nn.functional
    T = P + 2 * A
    q = torch.randn(1, Hq, T, D, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(1, Hkv, T, D, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn(1, Hkv, T, D, device=device, dtype=dtype, requires_grad=True)

    def two_seqs() -> torch.Tensor:
        # The baseline every ordinary DPO trainer pays: prompt+chosen and prompt+rejected.
        qs = torch.cat([q[:, :, : P + A], torch.cat([q[:, :, :P], q[:, :, P + A :]], 2)], 0)
        ks = torch.cat([k[:, :, : P + A], torch.cat([k[:, :, :P], k[:, :, P + A :]], 2)], 0)
        vs = torch.cat([v[:, :, : P + A], torch.cat([v[:, :, :P], v[:, :, P + A :]], 2)], 0)
        return F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True)

    def ideal() -> torch.Tensor:  # one causal pass over P + 2A: a lower bound on the work
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    seg = (Segments(P, A, A),)

    def backend_fn(name: str) -> Any:
        def run() -> torch.Tensor:
            spec = SharedPrefixSpec(seg, T, name)
            return shared_prefix_attention(None, q, k, v, None, scaling=D ** -0.5,  # type: ignore[arg-type]
                                           shared_prefix=spec)[0]
        return run

    cases: dict[str, Any] = {"sdpa_two_sequences": two_seqs, "ideal_single_causal": ideal}
    names = ["split", "split_lse"] + (["flex"] if device.type == "cuda" else [])
    if device.type != "cuda" and P + 2 * A <= 4096:
        names.insert(0, "eager_mask")
    for n in names:
        cases[n] = backend_fn(n)
    out = {}
    for name, fn in cases.items():
        try:
            times = []
            for i in range(steps + 1):
                sync(device)
                t = time.perf_counter()
                fn().float().sum().backward()
                sync(device)
                if i:
                    times.append(time.perf_counter() - t)
                q.grad = k.grad = v.grad = None
            out[name] = sorted(times)[len(times) // 2]
        except Exception as exc:  # a kernel missing on this device: report it, keep going
            out[name] = float("nan")
            print(f"  attention {name} at P={P}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def find_max_prompt(fn: Any, start: int, limit: int) -> int:
    """Largest P (multiple of 1024, doubling then bisecting) for which ``fn(P)`` does not OOM."""
    ok, P = 0, start
    while limit >= P:
        try:
            fn(P)
            ok, P = P, P * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            reset_mem(torch.device("cuda"))
    lo, hi = ok, min(P, limit + 1)
    while hi - lo > 1024:
        mid = (lo + hi) // 2 // 1024 * 1024
        try:
            fn(mid)
            lo = mid
        except torch.cuda.OutOfMemoryError:
            hi = mid
        finally:
            reset_mem(torch.device("cuda"))
    return lo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-lens", default="8192,16384,32768")
    ap.add_argument("--answer-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attention", default="auto", help="auto, split, split_lse, flex, eager_mask, or all")
    ap.add_argument("--model-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="weight dtype on both sides (the TRL reference run used bf16 weights)")
    ap.add_argument("--no-trl", action="store_true")
    ap.add_argument("--attention-only", action="store_true")
    ap.add_argument("--find-max", action="store_true")
    ap.add_argument("--max-search", type=int, default=262144)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, short prompts")
    ap.add_argument("--json", type=Path, default=None, help="also write raw results here")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/longreward-bench"))
    a = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = TINY if a.tiny else QWEN25_15B
    lens = [int(x) for x in a.prompt_lens.split(",")]
    A = a.answer_len
    if a.tiny and a.prompt_lens == ap.get_default("prompt_lens"):
        lens, A = [256, 512], 64
    dtype = torch.bfloat16 if a.model_dtype == "bfloat16" and device.type == "cuda" else torch.float32
    if device.type != "cuda" and not a.tiny:
        print("no CUDA device: use --tiny for a CPU smoke run", file=sys.stderr)
        return 2
    backends = (["split", "split_lse", "flex"] if a.attention == "all"
                else [resolve_backend(a.attention, device)])
    if device.type != "cuda":
        backends = [b for b in backends if b != "flex"] or ["eager_mask"]  # flex: no CPU backward
    print(f"device={device} torch={torch.__version__} dtype={dtype} model={'tiny' if a.tiny else 'Qwen2.5-1.5B-shaped'} "
          f"answers={A} backends={backends}")
    results: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "answer_len": A,
                               "model": "tiny" if a.tiny else "qwen2.5-1.5b-shaped", "rows": []}

    if a.attention_only:
        print(f"{'P':>7} | " + " | ".join(f"{n:>20}" for n in ["sdpa_two_sequences", "ideal", "split", "split_lse", "flex"]))
        for P in lens:
            r = attention_only_bench(P, A, device, dtype if device.type == "cuda" else torch.float32, a.steps)
            base = r["sdpa_two_sequences"]
            cells = [f"{r.get(n, float('nan')) * 1e3:8.2f}ms {base / r.get(n, float('nan')):5.2f}x"
                     for n in ["sdpa_two_sequences", "ideal_single_causal", "split", "split_lse", "flex"]]
            print(f"{P:>7} | " + " | ".join(f"{c:>20}" for c in cells))
            results["rows"].append({"P": P, "attention_only_s": r})
    else:
        trl_missing = None
        if not a.no_trl:
            try:
                import trl  # noqa: F401
            except ImportError:
                trl_missing = "TRL not installed (pip install 'trl>=1.16'): TRL column skipped"
                print(trl_missing)
        header = f"{'P':>7} {'backend':>10} {'ours s/step':>11} {'ours tok/s':>11} {'ours GiB':>9} {'MFU':>6} | {'TRL s/step':>10} {'TRL tok/s':>10} {'TRL GiB':>8} | {'speed×':>6} {'mem×':>5}"
        print(header)
        for P in lens:
            toks = P + 2 * A
            trl_res: dict[str, Any] | None = None
            if not a.no_trl and trl_missing is None:
                try:
                    trl_res = trl_step_bench(shape, P, A, a.steps, a.warmup, device, dtype, a.workdir)
                except Exception as exc:  # report, keep our column
                    print(f"  TRL at P={P} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            for be in backends:
                ours = our_step_bench(shape, P, A, be, a.steps, a.warmup, device, dtype)
                mfu = model_flops(shape, P, A) / ours["step_s"] / (a.peak_tflops * 1e12)
                row = {"P": P, "backend": be, "ours": ours, "trl": trl_res, "tokens": toks,
                       "ours_tokens_per_s": toks / ours["step_s"], "mfu": mfu}
                results["rows"].append(row)
                fmt_mem = lambda x: f"{x:9.2f}" if x is not None else f"{'-':>9}"  # noqa: E731
                line = (f"{P:>7} {be:>10} {ours['step_s']:11.3f} {toks / ours['step_s']:11.0f} "
                        f"{fmt_mem(ours['peak_gib'])} {mfu * 100:5.1f}% | ")
                if trl_res:
                    speed = trl_res["step_s"] / ours["step_s"]
                    mem = (ours["peak_gib"] / trl_res["peak_gib"]) if ours["peak_gib"] and trl_res["peak_gib"] else float("nan")
                    line += (f"{trl_res['step_s']:10.3f} {toks / trl_res['step_s']:10.0f} "
                             f"{fmt_mem(trl_res['peak_gib'])[1:]} | {speed:6.2f} {mem:5.2f}")
                else:
                    ref = TRL_REFERENCE.get(P) if not a.tiny else None
                    line += (f"{'(ref ' + str(ref[0]) + ')':>10} {toks / ref[0]:10.0f} {ref[1]:8.1f} | "
                             f"{ref[0] / ours['step_s']:6.2f} {(ours['peak_gib'] or float('nan')) / ref[1]:5.2f}  (vs issue's TRL figures)"
                             if ref else f"{'-':>10} {'-':>10} {'-':>8} | {'-':>6} {'-':>5}")
                print(line)
        if a.find_max and device.type == "cuda":
            be = backends[0]
            ours_max = find_max_prompt(lambda P: our_step_bench(shape, P, A, be, 1, 0, device, dtype),
                                       8192, a.max_search)
            print(f"longest prompt that fits (ours, {be}): {ours_max}")
            results["max_prompt_ours"] = ours_max
            if not a.no_trl and trl_missing is None:
                trl_max = find_max_prompt(lambda P: trl_step_bench(shape, P, A, 1, 0, device, dtype, a.workdir),
                                          8192, a.max_search)
                print(f"longest prompt that fits (TRL): {trl_max}")
                results["max_prompt_trl"] = trl_max
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
