"""Reading command-line output the way a person does."""

from __future__ import annotations


def words(output: str) -> str:
    """The output's words separated by single spaces.

    Typer's rich error panels draw borders and wrap long messages; without them a message can be matched
    wherever the panel wrapped it.
    """
    return " ".join(output.replace("│", " ").split())
