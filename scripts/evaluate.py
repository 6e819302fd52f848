"""BLEU, chrF and TER (sacrebleu) of a hypothesis file, or of a model on a data split."""
import json

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from seq2seq.cli import input_lines, output_file, user_errors
    from seq2seq.evaluation import corpus_scores
    from seq2seq.translator import Translator

    @user_errors
    def run() -> None:
        if cfg.model_file:
            data = instantiate(cfg.data).load(cfg.split)
            translator = Translator.load(cfg.model_file, beam_size=cfg.beam_size, alpha=cfg.alpha)
            hyps, refs = list(translator.stream(data["src"], total=len(data))), data["tgt"]
            if cfg.output:
                with output_file(cfg.output) as out:
                    out.writelines(h + "\n" for h in hyps)
        elif cfg.hyp and cfg.ref:
            hyps, refs = list(input_lines(cfg.hyp)), list(input_lines(cfg.ref))
            if len(hyps) != len(refs):
                raise ValueError(f"{cfg.hyp} has {len(hyps)} lines but {cfg.ref} has {len(refs)}")
        else:
            raise ValueError("give hyp=FILE ref=FILE, or model_file=FILE [split=test]")
        scores = corpus_scores(hyps, refs, tuple(cfg.metrics))
        scores["sentences"] = len(hyps)
        if cfg.json:
            print(json.dumps(scores, indent=1))
        else:
            for name in cfg.metrics:
                print(f"{name.upper():5s} {scores[name]:6.2f}  {scores[name + '_signature']}")

    run()


if __name__ == "__main__":
    main()
