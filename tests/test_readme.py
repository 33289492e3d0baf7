"""What the README shows a command or a call printing is what it prints now."""

import re
from pathlib import Path

from agents.cli import main
from dialog_gym import OracleAgent, evaluate

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def shown_output(command: str) -> str:
    """The lines the README shows after ``$ COMMAND`` in a code block."""
    match = re.search(rf"^\$ {re.escape(command)}\n(.*?)^```", README, flags=re.M | re.S)
    assert match, f"the README shows no output of `{command}`"
    return match.group(1).strip()


def test_the_evaluate_example_prints_what_the_readme_shows(capsys):
    main(["evaluate"])
    assert capsys.readouterr().out.strip() == shown_output("dialog-gym evaluate")


def test_the_evaluate_call_returns_what_the_readme_shows():
    result = evaluate(OracleAgent(), "DialogQA-v0", episodes=500, seed=0, split="test")
    rounded = {key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()}
    assert f"# {rounded}" in README
