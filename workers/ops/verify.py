"""``verify_read_models``: every read model compared with a rebuild of it from the log.

Callers (``sagaworks projections verify``, audits, tests after a scenario) get a ``Report``:
per projection a ``readstore.verify.Verification`` (documents compared, how many differ,
the first differences), and ``consistent`` when none differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from readstore.db import Document
from readstore.verify import Verification, verify_projection


@dataclass
class Report:
    """The verifications of the projections asked for, by name."""

    projections: dict[str, Verification] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return all(v.consistent for v in self.projections.values())

    @property
    def checked(self) -> int:
        return sum(v.documents for v in self.projections.values())

    @property
    def differences(self) -> list[str]:
        return [f"{name}: {d}" for name, v in self.projections.items() for d in v.differences]

    def asdict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "checked": self.checked,
            "projections": [v.asdict() for v in self.projections.values()],
        }


def verify_read_models(database: Database[Document], names: Iterable[str] | None = None) -> Report:
    """Compare each projection (all by default, or those ``names``) with a rebuild from the log.

    Writes nothing; raises ``LookupError`` for an unknown name."""
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- the registry

    wanted = sorted(PROJECTIONS) if names is None else list(names)
    unknown = [n for n in wanted if n not in PROJECTIONS]
    if unknown:
        raise LookupError(f"no projection {unknown[0]!r}; known: {', '.join(sorted(PROJECTIONS))}")
    report = Report()
    for name in wanted:
        report.projections[name] = verify_projection(database, PROJECTIONS[name][0])
    return report
