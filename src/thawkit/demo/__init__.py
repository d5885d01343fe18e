"""The built-in demo dataset, written by the thawkit team: customer-support messages labeled by intent.

Five intents (billing, shipping, technical, account, returns), written to overlap in vocabulary
(refunds appear under billing and returns, passwords under account and technical) so that a
keyword model is not enough and strategies really differ.
"""

from __future__ import annotations

from pathlib import Path


def demo_data_path() -> Path:
    return Path(__file__).with_name("support_tickets.csv")
