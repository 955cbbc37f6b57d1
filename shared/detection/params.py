"""The `params` each built-in detection accepts in a policy file: names, types, ranges, units.

One row per parameter; a detection that reads a new parameter adds its row here, and policy
files are checked against this table at load (`shared/policies.py`), so a value the detection
could not use (`threshold: 0`, `threshold: ten`, `window_minutes: -5`) never reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ParamKind = Literal["integer", "number"]


@dataclass(frozen=True)
class ParamSpec:
    kind: ParamKind  # integer: whole numbers only; number: integers or decimals
    minimum: float
    maximum: float
    unit: str  # what the value counts, in words ("failed logins", "minutes")
    exclusive_minimum: bool = False  # number: strictly greater than `minimum`

    def describe(self) -> str:
        low = f"greater than {self.minimum:g}" if self.exclusive_minimum else f"{self.minimum:g}"
        if self.exclusive_minimum:
            return f"a {self.kind} {low} and at most {self.maximum:g} ({self.unit})"
        return f"an {self.kind} from {low} to {self.maximum:g} ({self.unit})"

    def check(self, value: Any) -> str | None:
        """None when the value is acceptable, else what is wrong with it."""
        numeric = (int,) if self.kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"expected {self.describe()}, got {value!r}"
        too_low = value <= self.minimum if self.exclusive_minimum else value < self.minimum
        if too_low or value > self.maximum or value != value:  # the last: NaN
            return f"expected {self.describe()}, got {value!r}"
        return None


MAX_WINDOW_MINUTES = 24 * 60  # a window longer than a day is not a burst

BUILTIN_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "vigil.multiple_failed_logins": {
        "threshold": ParamSpec("integer", 1, 10_000, "failed logins; alert when more"),
        "window_minutes": ParamSpec("integer", 1, MAX_WINDOW_MINUTES, "minutes, event time"),
        "baseline_multiplier": ParamSpec("integer", 1, 100, "times the user's usual peak"),
        "baseline_minimum": ParamSpec("integer", 1, 10_000, "failed logins"),
    },
}


def check_params(detector_id: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(parameter, problem) for each parameter the detection does not accept as given."""
    known = BUILTIN_PARAMS.get(detector_id, {})
    problems: list[tuple[str, str]] = []
    for name, value in params.items():
        spec = known.get(str(name))
        if spec is None:
            accepted = ", ".join(sorted(known)) or "none"
            problems.append((str(name), f"unknown parameter (accepted: {accepted})"))
            continue
        problem = spec.check(value)
        if problem:
            problems.append((str(name), problem))
    return problems
