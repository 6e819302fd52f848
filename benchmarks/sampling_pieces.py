"""What subword sampling costs in pieces: Multi30k's training split segmented by a model file's SentencePiece
models, most probable segmentation against sampled ones, per smoothing (data.subword_sampling.smoothing).

    python -m benchmarks.sampling_pieces runs/X/model.pt [--smoothing 0.1 0.2 0.3 0.5] [--nbest-size -1]

An epoch's tokens, and so its batches and its time, grow with the ratio printed: a smaller smoothing is
nearer uniform over the lattice and cuts words into more, shorter pieces.
"""
import argparse
from pathlib import Path

from seq2seq.config import SubwordSamplingConfig
from seq2seq.data.sources import read_lines
from seq2seq.modelfile import load_model

MULTI30K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multi30k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file")
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--nbest-size", type=int, default=-1)
    parser.add_argument("--multi30k", type=Path, default=MULTI30K)
    args = parser.parse_args()
    _, tokenizer, _ = load_model(args.model_file)
    src, tgt = (read_lines(args.multi30k / f"train.{lang}.gz") for lang in ("en", "de"))

    def pieces(sampling: SubwordSamplingConfig | None) -> tuple[int, int]:
        return (sum(map(len, tokenizer.encode_src(src, sampling))), sum(map(len, tokenizer.encode_tgt(tgt, sampling))))

    base = pieces(None)
    print(f"# {len(src)} training pairs; most probable segmentation: {base[0]} source, {base[1]} target pieces")
    print("smoothing  nbest   source pieces  x       target pieces  x")
    for alpha in args.smoothing:
        n = pieces(SubwordSamplingConfig(enabled=True, smoothing=alpha, nbest_size=args.nbest_size))
        print(f"{alpha:9.2f}  {args.nbest_size:5d}   {n[0]:13d}  {n[0] / base[0]:.3f}   {n[1]:13d}  {n[1] / base[1]:.3f}")


if __name__ == "__main__":
    main()
