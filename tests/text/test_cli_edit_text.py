"""`dicelib edit-text`: the edited sentence alone on stdout, the input back at identity settings, one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dicelib.cli import app

runner = CliRunner()
NEG, POS = "Negative Sentiment: After the storm.", "Positive Sentiment: After the storm."
TEXT = "The garden looked Ruined."


def run(*args: str):
    return runner.invoke(app, ["edit-text", *map(str, args)])


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A small random BertForMaskedLM saved as any Hugging Face folder (config, weights, tokenizer)."""
    from transformers import BertConfig

    from dicelib.text import model as text_model

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("bert")
    text_model.build_model(config, pretrained=False, seed=0).save_pretrained(folder)
    text_model.load_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("pseudo_inverse", ["lai", "onehot"])
def test_identity_settings_print_the_input_sentence(hf_folder, pseudo_inverse):
    out = run("--model", hf_folder, "--context", NEG, "--target-context", NEG, "--text", TEXT,
              "--lambda1", 1, "--lambda2", 0, "--pseudo-inverse", pseudo_inverse, "--steps", 8)
    assert out.exit_code == 0, out.output
    assert out.stdout == TEXT + "\n"  # exactly the input, nothing else on stdout
    assert "0 of" in out.stderr


def test_an_edit_prints_one_sentence_and_is_seeded(hf_folder):
    args = ("--model", hf_folder, "--context", NEG, "--target-context", POS, "--text", TEXT, "--steps", 8,
            "--tau", 1.0, "--lambda1", 0.0, "--seed", 3)
    a, b = run(*args), run(*args)
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout and a.stdout.count("\n") == 1 and a.stdout.strip() not in ("", TEXT)
    assert "tokens changed" in a.stderr and "tokens changed" not in a.stdout


def test_a_saved_text_folder_serves_as_model(tmp_path, hf_folder):
    from transformers import BertForMaskedLM

    from dicelib.text import model as text_model

    model = BertForMaskedLM.from_pretrained(hf_folder)
    folder = text_model.save_text_model(tmp_path / "text_mlm", model, text_model.load_tokenizer(), {})
    out = run("--model", folder, "--context", NEG, "--target-context", NEG, "--text", TEXT, "--lambda1", 1,
              "--lambda2", 0, "--steps", 4)
    assert out.exit_code == 0 and out.stdout == TEXT + "\n", out.output


def test_missing_models_and_bad_values_give_one_line(tmp_path, monkeypatch, hf_folder):
    from dicelib.text import model as text_model

    monkeypatch.setattr(text_model, "FOLDER", tmp_path / "text_mlm")
    out = run("--context", NEG, "--target-context", POS, "--text", TEXT)  # --model text, not trained here
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith("Error: no `text` model at") and "dvc repro train-text" in out.stderr
    assert out.stderr.count("\n") == 1
    out = run("--model", "nobody/no-such-mlm", "--context", NEG, "--target-context", POS, "--text", TEXT)
    assert out.exit_code == 2 and "nobody/no-such-mlm" in out.stderr and "Traceback" not in out.output
    for bad, match in ((("--tau", "1.5"), "tau"), (("--lambda1", "inf"), "lambda1"), (("--steps", "0"), "steps"),
                       (("--pseudo-inverse", "exact"), "pseudo_inverse"), (("--text", " "), "--text is empty")):
        args = dict(zip(("--model", "--context", "--target-context", "--text"), (str(hf_folder), NEG, POS, TEXT)))
        args[bad[0]] = bad[1]
        out = run(*[x for kv in args.items() for x in kv])
        assert out.exit_code == 2 and match in out.stderr, (bad, out.output)
