"""Episode-protocol presets: the choices that change numbers users compare against papers.

Every run records the resolved protocol next to its results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

BudgetUnit = Literal["env_steps", "queries"]
SuccessRule = Literal["first", "last"]


@dataclass(frozen=True)
class Protocol:
    name: str
    # Steps of `wait_action` before the policy acts (objects settle). Outside the budget,
    # as in OpenVLA's loop (`t < max_steps + num_steps_wait`).
    wait_steps: int = 10
    # None: the suite's own step limit (e.g. 220 for libero_spatial).
    budget: Optional[int] = None
    # "env_steps": the budget counts env steps; "queries": it counts policy queries
    # (each executing a whole chunk), as in NORA's LIBERO script.
    budget_unit: BudgetUnit = "env_steps"
    # "first": success ends the episode at the first successful step;
    # "last": run to the budget and judge the final step only (SimplerEnv).
    success_rule: SuccessRule = "first"
    description: str = ""

    def budget_for(self, suite_max_steps: int) -> int:
        return self.budget if self.budget is not None else suite_max_steps

    def with_overrides(self, **overrides) -> "Protocol":
        """A copy with the non-None overrides applied; validated."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        proto = dataclasses.replace(self, **changes)
        proto.validate()
        return proto

    def validate(self) -> None:
        if self.budget_unit not in ("env_steps", "queries"):
            raise ValueError(f"budget_unit must be 'env_steps' or 'queries', got {self.budget_unit!r}")
        if self.success_rule not in ("first", "last"):
            raise ValueError(f"success_rule must be 'first' or 'last', got {self.success_rule!r}")
        if self.wait_steps < 0 or (self.budget is not None and self.budget < 1):
            raise ValueError("wait_steps must be >= 0 and budget >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


OPENVLA = Protocol(
    name="openvla",
    description="OpenVLA/openpi LIBERO reference: 10 wait steps, suite step limit in env steps, "
    "episode ends at first success",
)

NORA = Protocol(
    name="nora",
    budget=500,
    budget_unit="queries",
    description="NORA's LIBERO script: 500 policy queries per episode whatever the suite, "
    "each executing the whole chunk; episode ends at first success",
)

SIMPLER = Protocol(
    name="simpler",
    wait_steps=0,
    success_rule="last",
    description="SimplerEnv's evaluator: no wait steps, every episode runs to the task's step limit "
    "(coke can / move near 80, drawers 113, Bridge 60, eggplant 120) and succeeds if the env's success "
    "flag holds at the last step",
)

SIMPLER_ANY_STEP = Protocol(
    name="simpler_any_step",
    wait_steps=0,
    success_rule="first",
    description="SimplerEnv with success at any step (episode ends at the first success): NOT the protocol; "
    "inflates rates (one published stack-cube result: 75% any-step vs 29% last-step)",
)
