"""Multi30k split by topic into two domains, for the fine-tuning demo (docs/training.md#fine-tuning).

    python -m benchmarks.domain_split OUT [--heldout-val 200] [--heldout-test 500] [--seed 0]

Writes two corpora in the layout conf/data/multi30k.yaml reads ({train,val,test_2016_flickr}.{en,de}.gz),
for ``data.source.path=OUT/general`` and ``data.source.path=OUT/animals``:
  animals  every pair of Multi30k (train, val and test_2016_flickr) whose English side names an animal
           (ANIMALS, whole words, any case), shuffled with --seed: the first --heldout-test pairs are its
           test split, the next --heldout-val its val split, the rest its train split
  general  every other pair: train from Multi30k's train, val and test from its val and test_2016_flickr
No pair is in two splits or in both corpora. Multi30k is read from ../shared/data/multi30k beside the
checkout (--multi30k to change it); OUT should be a temporary folder: the files are derived data, not
committed. The same arguments write the same files.
"""
import argparse
import gzip
import re
from pathlib import Path

import numpy as np

from seq2seq.data.sources import read_lines

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}  # our name -> Multi30k's file name
ANIMALS = ("dog", "dogs", "puppy", "puppies", "cat", "cats", "kitten", "kittens", "horse", "horses", "pony",
           "ponies", "animal", "animals", "cow", "cows", "cattle", "calf", "sheep", "lamb", "goat", "goats",
           "bird", "birds", "duck", "ducks", "pigeon", "pigeons", "bull", "bulls", "camel", "camels",
           "elephant", "elephants", "donkey", "donkeys", "mule", "pig", "pigs", "chicken", "chickens", "fish",
           "monkey", "ox", "oxen")
TOPIC = re.compile(rf"\b({'|'.join(ANIMALS)})\b", re.IGNORECASE)

Pairs = list[tuple[str, str]]


def split_by_topic(multi30k: Path, heldout_val: int, heldout_test: int, seed: int) -> dict[str, dict[str, Pairs]]:
    """{"general": {train, val, test}, "animals": {train, val, test}} of (English, German) pairs."""
    parts: dict[str, dict[str, Pairs]] = {"general": {}, "animals": {}}
    animals: Pairs = []
    for split, name in SPLITS.items():
        pairs = list(zip(read_lines(multi30k / f"{name}.en.gz"), read_lines(multi30k / f"{name}.de.gz"), strict=True))
        parts["general"][split] = [p for p in pairs if not TOPIC.search(p[0])]
        animals += [p for p in pairs if TOPIC.search(p[0])]
    if len(animals) <= heldout_val + heldout_test:
        raise SystemExit(f"error: {len(animals)} animal pairs in {multi30k}, not more than the "
                         f"{heldout_val + heldout_test} to hold out (--heldout-val, --heldout-test)")
    order = np.random.default_rng(seed).permutation(len(animals))
    shuffled = [animals[i] for i in order]
    parts["animals"] = {"test": shuffled[:heldout_test], "val": shuffled[heldout_test:heldout_test + heldout_val],
                        "train": shuffled[heldout_test + heldout_val:]}
    return parts


def write_corpus(folder: Path, splits: dict[str, Pairs]) -> None:
    """`splits` as {train,val,test_2016_flickr}.{en,de}.gz in `folder` (gzip without a time stamp: the same
    pairs give the same bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for side, lang in enumerate(("en", "de")):
            with open(folder / f"{SPLITS[split]}.{lang}.gz", "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
                f.write("".join(p[side] + "\n" for p in pairs).encode("utf-8"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder to write general/ and animals/ into")
    p.add_argument("--multi30k", type=Path, default=MULTI30K, help="Multi30k's {split}.{en,de}.gz")
    p.add_argument("--heldout-val", type=int, default=200, help="animal pairs held out as its val split")
    p.add_argument("--heldout-test", type=int, default=500, help="animal pairs held out as its test split")
    p.add_argument("--seed", type=int, default=0, help="the animal pairs' shuffle")
    args = p.parse_args()
    for name, splits in split_by_topic(args.multi30k, args.heldout_val, args.heldout_test, args.seed).items():
        write_corpus(args.out / name, splits)
        print(f"{args.out / name}: " + ", ".join(f"{split} {len(pairs)}" for split, pairs in splits.items()))


if __name__ == "__main__":
    main()
