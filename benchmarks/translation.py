"""Translation speed and quality by numerics (fp32 / bf16 / int8) and backend (onnx: the torch-free ONNX Runtime
path over scripts/export.py's folder), greedy and beam, ensembles, and Joey NMT's translate side by side, in one run.

    python -m benchmarks.translation model_file=runs/X/model.pt [peer=joey] [ensemble=[a.pt,b.pt]]
                                     [numerics=[fp32,onnx] onnx=exported/]  (conf/benchmarks/translation.yaml)

Each measurement runs in a fresh process (so its peak resident memory is its own): load the model,
translate 64 sentences to warm up, then the whole split in one call as translate.py does; it reports
sentences/s, target pieces/s (SentencePiece pieces of the output, the same unit for Joey's output),
peak RSS, the size of the weights as stored in memory (onnx: of the graphs), BLEU/chrF (sacrebleu) against the
references, and the share of lines translated exactly as fp32 PyTorch translates them at the same beam.
Joey NMT (peer=joey) is measured by benchmarks/speed.py's helper between our measurements. With repeats=R
every configuration (Joey's too) is measured once per round, R rounds, and the table gives each one's
median round: these machines drift by tens of percent within minutes.
"""
import io
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from benchmarks.meter import machine, peak_rss_mib, publish
from benchmarks.speed import joey_translate_throughput
from seq2seq.evaluation import corpus_scores
from seq2seq.inference.onnx_runtime import OnnxTranslator
from seq2seq.inference.translator import Translator

NUMERICS = {"fp32": {}, "bf16": {"precision": "bf16"}, "int8": {"quantize": "int8"}, "onnx": {"backend": "onnx"}}


def measure(model_file: str | list[str], options: dict, sources: list[str], refs: list[str], threads: int | None) -> dict:
    """One configuration, in this (fresh) process: speed, memory, size, quality."""
    if threads:
        torch.set_num_threads(threads)
    translator = Translator.load(model_file, **options)
    translator.translate(sources[:64])  # warm-up
    start = time.perf_counter()
    hyps = translator.translate(sources)
    seconds = time.perf_counter() - start
    if isinstance(translator, OnnxTranslator):
        weights = sum(p.stat().st_size for p in translator.folder.glob("*.onnx"))
    else:
        buffer = io.BytesIO()
        torch.save([m.state_dict() for m in translator.model.members], buffer)
        weights = buffer.getbuffer().nbytes
    scores = corpus_scores(hyps, refs, ("bleu", "chrf"))
    return {"options": options, "sents_s": len(sources) / seconds, "seconds": seconds,
            "tok_s": pieces(translator, hyps) / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "weights_mib": weights / 2**20, "bleu": scores["bleu"], "chrf": scores["chrf"],
            "threads": torch.get_num_threads(), "hyps": hyps}


def pieces(translator: Translator | OnnxTranslator, hyps: list[str]) -> int:
    return sum(len(ids) for ids in translator.tokenizer.encode_tgt(hyps))


def in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def run(cfg: DictConfig) -> dict:
    data = instantiate(cfg.data).load(cfg.split)
    sources, refs = list(data["src"]), list(data["tgt"])
    results = {"machine": machine(), "sentences": len(sources), "repeats": cfg.repeats, "rounds": []}
    tokenizer = Translator.load(cfg.model_file).tokenizer  # counts Joey's output pieces in our unit
    for round_ in range(cfg.repeats):  # every configuration once per round, so that drift spreads over all
        measured = {"numerics": [], "joey": []}
        for beam in cfg.beams:
            hyps = {}
            for name in cfg.numerics:
                model = cfg.onnx if name == "onnx" else cfg.model_file
                r = in_fresh_process(model, {"beam_size": beam, **NUMERICS[name]}, sources, refs, cfg.threads)
                hyps[name] = r.pop("hyps")
                measured["numerics"].append({"numerics": name, "beam": beam, **r})
                print(f"round {round_ + 1}: {name} beam {beam}: {r['sents_s']:.1f} sents/s, BLEU {r['bleu']:.2f}",
                      file=sys.stderr)
            for r in measured["numerics"][-len(cfg.numerics):]:
                r["identical"] = identical(hyps[r["numerics"]], hyps.get("fp32"))
            if cfg.peer == "joey":
                joey = joey_translate_throughput(cfg.joey, sources, beam)
                joey["tok_s"] = sum(len(ids) for ids in tokenizer.encode_tgt(joey.pop("hyps"))) / joey["seconds"]
                measured["joey"].append(joey)
        results["rounds"].append(measured)
    for kind in ("numerics", "joey"):
        results[kind] = median_round(results["rounds"], kind)
    results["ensemble"] = []
    if cfg.ensemble:
        members = list(OmegaConf.to_container(cfg.ensemble))
        for model_file in [*members, members]:
            r = in_fresh_process(model_file, {"beam_size": cfg.ensemble_beam}, sources, refs, cfg.threads)
            r.pop("hyps")
            results["ensemble"].append({"model_file": model_file, **r})
    return results


def identical(hyps: list[str], reference: list[str] | None) -> float | None:
    """The share of lines translated exactly as `reference` (fp32 PyTorch at the same beam) translates them."""
    return None if reference is None else sum(a == b for a, b in zip(hyps, reference)) / len(reference)


def median_round(rounds: list[dict], kind: str) -> list[dict]:
    """Per configuration (the i-th measurement of `kind` in every round), the one with the median sentences/s."""
    return [sorted(runs, key=lambda r: r["sents_s"])[len(runs) // 2] for runs in zip(*(r[kind] for r in rounds))]


def table(results: dict) -> str:
    threads = sorted({r["threads"] for r in results["numerics"] + results["ensemble"]})
    out = [f"# {results['machine'].split(',')[0]}; torch threads per measurement: {threads}; {results['sentences']} sentences; "
           f"speeds: the median of {results.get('repeats', 1)} rounds"]
    if results["numerics"]:
        fp32 = {r["beam"]: r for r in results["numerics"] if r["numerics"] == "fp32"}
        joey = {r["beam"]: r for r in results["joey"]}
        out.append(f"{'numerics':8s} {'beam':>4s} {'sents/s':>8s} {'tok/s':>8s} {'x fp32':>7s} {'x Joey':>7s} "
                   f"{'tok x Joey':>10s} {'peak RSS MiB':>12s} {'weights MiB':>11s} {'BLEU':>6s} {'chrF':>6s} {'= fp32':>7s}")
        for r in results["numerics"]:
            ref, peer = fp32.get(r["beam"]), joey.get(r["beam"])
            x_joey = (f"{r['sents_s'] / peer['sents_s']:6.2f}x {r['tok_s'] / peer['tok_s']:9.2f}x" if peer
                      else f"{'-':>7s} {'-':>10s}")
            out.append(f"{r['numerics']:8s} {r['beam']:4d} {r['sents_s']:8.1f} {r['tok_s']:8.0f} "
                       f"{r['sents_s'] / ref['sents_s'] if ref else float('nan'):6.2f}x {x_joey} "
                       f"{r['peak_rss_mib']:12.0f} {r['weights_mib']:11.1f} {r['bleu']:6.2f} {r['chrf']:6.2f} "
                       f"{'-' if r.get('identical') is None else format(r['identical'], '7.1%'):>7s}")
        for r in results["joey"]:
            out.append(f"{'Joey NMT':8s} {r['beam']:4d} {r['sents_s']:8.1f} {r['tok_s']:8.0f}")
    for r in results["ensemble"]:
        name = " + ".join(r["model_file"]) if isinstance(r["model_file"], list) else r["model_file"]
        out.append(f"ensemble beam {r['options']['beam_size']}: {name}: BLEU {r['bleu']:.2f} chrF {r['chrf']:.2f} "
                   f"{r['sents_s']:.1f} sents/s")
    return "\n".join(out)


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmarks/translation")
def main(cfg: DictConfig) -> None:
    publish(run(cfg), table, cfg.output)


if __name__ == "__main__":
    main()
