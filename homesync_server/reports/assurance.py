"""What proves the backups restore, and what holds their pruning: each machine's newest
disaster-recovery drill (how many passed, which did not and why) and the machines
whose pruning a mass change or a history rollback froze until an admin releases them.
Pure: it gets the index's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LISTED = 100  # drills that did not pass listed at most (their count is always whole)


@dataclass(frozen=True)
class Assurance:
    """Drills and mass-change freezes, as the report shows them."""

    drilled: dict[str, int]  # result ('passed', 'failed'): machines whose newest drill had it
    newest_drill: float | None
    not_passed: list[dict[str, Any]]  # machine_id, owner, name, finished, archive, why
    frozen: list[dict[str, Any]]  # machine_id, owner, name, archive, share, baseline, flagged_at
    rolled_back: list[dict[str, Any]] = ()  # machine_id, owner, name, frozen_at, reason (history rollbacks)

    @property
    def failed(self) -> int:
        return sum(n for result, n in self.drilled.items() if result != "passed")

    def as_dict(self) -> dict[str, Any]:
        return {"drills": {"machines_by_result": self.drilled, "newest": self.newest_drill,
                           "not_passed": self.not_passed},
                "frozen_by_mass_change": self.frozen, "frozen_by_history_rollback": list(self.rolled_back)}

    def as_values(self) -> tuple:
        """Return it as plain values (what marshal can carry); Assurance(*values) is it again."""
        return self.drilled, self.newest_drill, self.not_passed, self.frozen, list(self.rolled_back)


NO_ASSURANCE = Assurance({}, None, [], [], [])


def assurance(counts: list[dict[str, Any]], not_passed: list[dict[str, Any]],
              frozen: list[dict[str, Any]], rolled_back: list[dict[str, Any]] = ()) -> Assurance:
    """Given Index.drill_outcomes, Index.frozen_by_mass_change and Index.frozen_by_history,
    return the assurance part."""
    return Assurance({r["result"]: r["machines"] for r in counts}, max((r["newest"] for r in counts), default=None),
                     [{"machine_id": r["machine_id"], "owner": r["owner"], "name": r["name"],
                       "finished": r["finished"], "archive": r["archive"], "why": _why(r["failures"])}
                      for r in not_passed],
                     [dict(r) for r in frozen], [dict(r) for r in rolled_back])


def _why(failures: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f.get('stage', '?')}: {f.get('message', '')}" for f in failures) or "no detail recorded"
