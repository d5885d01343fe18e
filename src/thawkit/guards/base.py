"""Findings and the report that collects them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from thawkit.errors import ThawkitError

log = logging.getLogger("thawkit")


class GuardError(ThawkitError):
    """A guard stopped the run (divergence, or any finding under --strict)."""


@dataclass(frozen=True)
class Finding:
    guard: str
    message: str
    fix: str
    severity: str = "warning"  # "warning" or "error" (errors stop the run whatever --strict says)

    def line(self) -> str:
        return f"{self.guard}: {self.message}; fix: {self.fix}"


@dataclass
class GuardReport:
    strict: bool = False
    findings: list[Finding] = field(default_factory=list)

    def add(self, findings: list[Finding]) -> None:
        """Record findings; raise for errors, and for any finding under --strict."""
        for finding in findings:
            self.findings.append(finding)
            if finding.severity == "error" or self.strict:
                raise GuardError(finding.line())
            log.warning("Hint: %s", finding.line())

    def as_list(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.findings]
