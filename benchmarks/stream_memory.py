"""Peak memory of scripts/translate.py on a long input: it must stay flat as the input grows.

    python -m benchmarks.stream_memory MODEL_FILE [--lines 100000 10000] [--beam-size 1]

Generates files of that many lines (5 to 25 random words each), translates each with the real
script in a child process and prints the child's peak resident set size (getrusage) per run.
"""
import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("a man woman child dog cat two three people are is in on the with at of street water red blue "
         "young old playing running sitting standing riding bike ball field beach snow shirt hat "
         "black white group front small large building stage crowd looking walking").split()


def generate(path: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            f.write(" ".join(rng.choices(WORDS, k=rng.randint(5, 25))).capitalize() + ".\n")


def peak_rss_mib(model_file: str, input_file: Path, output_file: Path, beam_size: int) -> tuple[float, float]:
    """(peak RSS of the translate.py child in MiB, seconds); each run in a fresh child process."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "translate.py"
    start = time.monotonic()
    # getrusage(RUSAGE_CHILDREN) is the largest peak over all waited-for children, so each run is
    # measured by a fresh intermediate process that has only this one child.
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, str(script), f"model_file={model_file}", f"input={input_file}",
           f"output={output_file}", f"beam_size={beam_size}"]
    done = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_file")
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 10_000])
    parser.add_argument("--beam-size", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lines:
            src, out = Path(tmp) / f"in{n}.en", Path(tmp) / f"out{n}.de"
            generate(src, n)
            rss, seconds = peak_rss_mib(args.model_file, src, out, args.beam_size)
            written = sum(1 for _ in open(out, encoding="utf-8"))
            print(f"{n:>8,} lines -> {written:,} translations: peak RSS {rss:,.0f} MiB, {seconds:,.0f} s "
                  f"(beam {args.beam_size})", flush=True)


if __name__ == "__main__":
    main()
