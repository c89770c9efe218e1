"""Episode-protocol presets: the choices that change numbers users compare against papers.

Every run records the resolved protocol next to its results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

BudgetUnit = Literal["env_steps", "queries"]
SuccessRule = Literal["first", "chunk_end", "last"]
GripperRule = Literal["as_mapped", "nonneg_closes"]
SUCCESS_RULES = ("first", "chunk_end", "last")
GRIPPER_RULES = ("as_mapped", "nonneg_closes")


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
    # When success is checked:
    # "first": after every env step; the first successful step ends the episode (OpenVLA, openpi);
    # "chunk_end": after the last step of each executed chunk only, i.e. right before the next
    #   query and at the end of the budget (NORA's LIBERO script: a success undone later in the
    #   chunk does not count, and the steps of the rest of the chunk are run and counted);
    # "last": run to the budget and judge the final step only (SimplerEnv).
    success_rule: SuccessRule = "first"
    # Applied to the executed gripper command after the suite's mapping:
    # "as_mapped": as the suite's postprocessor left it;
    # "nonneg_closes": any value >= 0 becomes +1 (close), as NORA's LIBERO script's
    #   `np.where(a >= 0, 1, a)`: a model gripper of exactly 0.5 maps to 0, then to close.
    gripper_rule: GripperRule = "as_mapped"
    # The simulator's own step limit, counting every env step of the episode including the
    # wait steps, or None. robosuite's horizon (LIBERO's default 1000, with ignore_done=False)
    # makes the env raise on the step after it, which the reference scripts catch and count as
    # a failure; it binds only when budget x chunk exceeds it (NORA-LONG: 500 queries x 5).
    sim_horizon: Optional[int] = None
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
        if self.success_rule not in SUCCESS_RULES:
            raise ValueError(f"success_rule must be one of {', '.join(SUCCESS_RULES)}; got {self.success_rule!r}")
        if self.gripper_rule not in GRIPPER_RULES:
            raise ValueError(f"gripper_rule must be one of {', '.join(GRIPPER_RULES)}; got {self.gripper_rule!r}")
        if self.sim_horizon is not None and self.sim_horizon <= self.wait_steps:
            raise ValueError(f"sim_horizon ({self.sim_horizon}) must exceed wait_steps ({self.wait_steps})")
        if self.wait_steps < 0 or (self.budget is not None and self.budget < 1):
            raise ValueError("wait_steps must be >= 0 and budget >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Protocol":
        """A stored protocol; fields that older records lack take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def same_protocol(a: dict, b: dict) -> bool:
    """Whether two stored protocols are the same (an older record's missing fields count as defaults)."""
    strip = lambda p: {k: v for k, v in p.to_dict().items() if k != "description"}  # noqa: E731
    return strip(Protocol.from_dict(a or {"name": "?"})) == strip(Protocol.from_dict(b or {"name": "?"}))


OPENVLA = Protocol(
    name="openvla",
    description="OpenVLA/openpi LIBERO reference: 10 wait steps, suite step limit in env steps, "
    "episode ends at first success",
)

NORA = Protocol(
    name="nora",
    budget=500,
    budget_unit="queries",
    success_rule="chunk_end",
    gripper_rule="nonneg_closes",
    sim_horizon=1000,
    description="NORA's LIBERO script (declare-lab/nora experiments/libero/run_libero_eval_nora.py): "
    "10 wait steps, then up to 500 policy queries whatever the suite, each executing the whole chunk; "
    "success is LIBERO's done at the chunk's last step; gripper >= 0 closes; robosuite's horizon "
    "(1000 env steps, wait steps included) ends the episode as a failure",
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
