"""A team-written sample of general English: the reference for domain similarity and forgetting."""

from __future__ import annotations

from pathlib import Path

GENERAL_SAMPLE = Path(__file__).with_name("general_english.txt")


def general_sentences() -> list[str]:
    return [line.strip() for line in GENERAL_SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
