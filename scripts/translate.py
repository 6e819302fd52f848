"""Translate a file (or stdin) with a model file: one output line per input line, in order."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    from seq2seq.cli import input_lines, output_file, user_errors
    from seq2seq.translator import Translator

    @user_errors
    def run() -> None:
        translator = Translator.load(cfg.model_file, beam_size=cfg.beam_size, alpha=cfg.alpha, max_len=cfg.max_len,
                                     max_source_len=cfg.max_source_len, max_tokens=cfg.max_tokens,
                                     device=cfg.device)
        with output_file(cfg.output) as out:
            for line in translator.stream(input_lines(cfg.input)):
                out.write(line + "\n")

    run()


if __name__ == "__main__":
    main()
