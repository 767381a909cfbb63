"""What every settings type shares: strict, frozen pydantic models (unknown keys are errors).

Each concept has one settings type, defined beside the code that uses it and used as is by the
run config (``leap.config``), the CLI flags and the code: ``PromptSettings`` (``leap.agents``),
``StudentSettings`` (``leap.builders``), ``TrainSettings`` (``leap.train``), ``Budget``
(``leap.teachers.llm``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

#: how a LEAP iteration updates the student on the aggregate (behaviour cloning is always SFT)
UpdateRule = Literal["sft", "dpo", "kto"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
