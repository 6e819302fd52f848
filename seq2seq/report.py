"""An evaluation report: corpus scores with signatures, scores by source length, the worst sentences.

    write_report(Path("report.md"), hyps, refs, scores, srcs)   # + report.buckets.png beside it
    write_report(Path("report.html"), hyps, refs, scores, srcs) # one file, the chart inlined
"""
import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from seq2seq.atomic_files import atomic_write_text
from seq2seq.config import ConfigError
from seq2seq.data.sources import DataError
from seq2seq.evaluation import LABELS, METRICS, corpus_scores
from seq2seq.plots import bucket_chart, save

EDGES = (5, 10, 15, 20, 25, 30, 40)  # upper ends of the source-length buckets, in words
BUCKET_METRICS = ("bleu", "chrf")


@dataclass
class Bucket:
    label: str  # e.g. "11-15" words
    sentences: int
    scores: dict[str, float]  # corpus scores of the bucket's sentences


@dataclass
class Sentence:
    line: int  # 1-based
    chrf: float
    src: str | None
    ref: str
    hyp: str


def length_buckets(srcs: list[str], hyps: list[str], refs: list[str], edges: tuple[int, ...] = EDGES) -> list[Bucket]:
    """Corpus BLEU and chrF of the sentences whose source has 1-5, 6-10, ... words; empty buckets left out."""
    words = [max(len(s.split()), 1) for s in srcs]
    buckets = []
    for low, high in zip((1, *(e + 1 for e in edges)), (*edges, None)):
        members = [i for i, n in enumerate(words) if low <= n and (high is None or n <= high)]
        if members:
            scores = corpus_scores([hyps[i] for i in members], [refs[i] for i in members], BUCKET_METRICS)
            buckets.append(Bucket(f"{low}-{high}" if high else f"{low}+", len(members),
                                  {m: scores[m] for m in BUCKET_METRICS}))
    return buckets


def worst_sentences(hyps: list[str], refs: list[str], srcs: list[str] | None = None, n: int = 10) -> list[Sentence]:
    """The n sentences with the lowest sentence-level chrF (ties: earlier line first)."""
    chrf = METRICS["chrf"]()
    scores = [chrf.sentence_score(h, [r]).score
              for h, r in tqdm(zip(hyps, refs), total=len(hyps), unit="sent", desc="sentence chrF", disable=None)]
    order = sorted(range(len(hyps)), key=lambda i: (scores[i], i))[:n]
    return [Sentence(i + 1, scores[i], srcs[i] if srcs is not None else None, refs[i], hyps[i]) for i in order]


def report_format(path: Path) -> str:
    """The report format, "md" or "html", from the file name."""
    kind = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"report={path}: the name must end in .md (Markdown + PNG beside it) or .html")
    return kind


def write_report(path: Path, hyps: list[str], refs: list[str], scores: dict, srcs: list[str] | None = None,
                 about: str = "") -> list[Path]:
    """Write a Markdown (.md) or HTML (.html) report; returns the files written (report, chart)."""
    kind = report_format(path)
    if srcs is not None and len(srcs) != len(hyps):
        raise DataError(f"{len(srcs)} source lines but {len(hyps)} hypotheses")
    path.parent.mkdir(parents=True, exist_ok=True)
    buckets = length_buckets(srcs, hyps, refs) if srcs is not None else []
    worst = worst_sentences(hyps, refs, srcs)
    chart = None
    if buckets:
        chart = bucket_chart([b.label for b in buckets], [b.sentences for b in buckets],
                             {LABELS[m]: [b.scores[m] for b in buckets] for m in BUCKET_METRICS},
                             title=f"scores by source length ({len(hyps)} sentences)")
    written = [path]
    if kind == "md":
        image = None
        if chart is not None:
            image = save(chart, path.with_name(f"{path.stem}.buckets.png"))
            written.append(image)
        atomic_write_text(path, _markdown(scores, buckets, worst, image and image.name, about))
    else:
        png = None
        if chart is not None:
            buffer = io.BytesIO()
            chart.savefig(buffer, format="png", dpi=110)
            png = base64.b64encode(buffer.getvalue()).decode()
        atomic_write_text(path, _html(scores, buckets, worst, png, about))
    return written


def _metrics(scores: dict) -> list[str]:
    return [m for m in METRICS if m in scores]


NO_SOURCE = "No source text was given (hyp/ref mode without `src=FILE`), so there are no length buckets."


def _markdown(scores: dict, buckets: list[Bucket], worst: list[Sentence], image: str | None, about: str) -> str:
    def cell(text: str) -> str:
        return html.escape(text, quote=False).replace("|", "\\|") or " "

    out = ["# Evaluation report", ""]
    if about:
        out += [about, ""]
    out += ["## Corpus scores", "", "| metric | score | sacrebleu signature |", "|---|---:|---|"]
    out += [f"| {LABELS[m]} | {scores[m]:.2f} | `{cell(scores[m + '_signature'])}` |" for m in _metrics(scores)]
    out += ["", "## Scores by source length", ""]
    if buckets:
        out += [f"![BLEU and chrF by source length]({image})", "",
                "| source words | sentences | BLEU | chrF |", "|---|---:|---:|---:|"]
        out += [f"| {b.label} | {b.sentences} | {b.scores['bleu']:.2f} | {b.scores['chrf']:.2f} |" for b in buckets]
    else:
        out.append(NO_SOURCE)
    out += ["", f"## The {len(worst)} worst sentences by sentence-level chrF", ""]
    has_src = any(s.src is not None for s in worst)
    out.append("| line | chrF | " + ("source | " if has_src else "") + "reference | hypothesis |")
    out.append("|---:|---:|" + ("---|" if has_src else "") + "---|---|")
    for s in worst:
        source = f" {cell(s.src)} |" if has_src else ""
        out.append(f"| {s.line} | {s.chrf:.1f} |{source} {cell(s.ref)} | {cell(s.hyp)} |")
    return "\n".join(out) + "\n"


def _html(scores: dict, buckets: list[Bucket], worst: list[Sentence], png: str | None, about: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Evaluation report</title>',
           "<style>body{font-family:sans-serif;max-width:72em;margin:auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}code{font-size:90%}</style>",
           "</head><body>", "<h1>Evaluation report</h1>"]
    if about:
        out.append(f"<p>{e(about)}</p>")
    out += ["<h2>Corpus scores</h2>", "<table><tr><th>metric</th><th>score</th><th>sacrebleu signature</th></tr>"]
    out += [f"<tr><td>{e(LABELS[m])}</td><td>{scores[m]:.2f}</td><td><code>{e(scores[m + '_signature'])}</code></td></tr>"
            for m in _metrics(scores)]
    out += ["</table>", "<h2>Scores by source length</h2>"]
    if buckets:
        out.append(f'<img alt="BLEU and chrF by source length" src="data:image/png;base64,{png}">')
        out.append("<table><tr><th>source words</th><th>sentences</th><th>BLEU</th><th>chrF</th></tr>")
        out += [f"<tr><td>{b.label}</td><td>{b.sentences}</td><td>{b.scores['bleu']:.2f}</td>"
                f"<td>{b.scores['chrf']:.2f}</td></tr>" for b in buckets]
        out.append("</table>")
    else:
        out.append(f"<p>{e(NO_SOURCE)}</p>")
    out.append(f"<h2>The {len(worst)} worst sentences by sentence-level chrF</h2>")
    has_src = any(s.src is not None for s in worst)
    out.append("<table><tr><th>line</th><th>chrF</th>" + ("<th>source</th>" if has_src else "")
               + "<th>reference</th><th>hypothesis</th></tr>")
    for s in worst:
        source = f"<td>{e(s.src)}</td>" if has_src else ""
        out.append(f"<tr><td>{s.line}</td><td>{s.chrf:.1f}</td>{source}<td>{e(s.ref)}</td><td>{e(s.hyp)}</td></tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"
