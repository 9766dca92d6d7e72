"""Reading command-line output the way a person does."""

from __future__ import annotations


def words(output: str) -> str:
    """The output's words separated by single spaces.

    Typer's rich error panels draw borders and wrap long messages; without them a message can be matched
    wherever the panel wrapped it.
    """
    return " ".join(output.replace("│", " ").split())


def usage_error(result) -> str:
    """The words of a command's usage error, checked to be one: exit status 2, a short message, no traceback."""
    assert result.exit_code == 2, (result.exception, result.output)
    assert "Traceback" not in result.output
    assert result.output.count("\n") <= 6, result.output  # a progress bar redraws on one line
    return words(result.output)
