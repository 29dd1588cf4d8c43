"""Why an engine would not load, in one line a person reads first.

An engine that fails to load leaves a traceback of 30 lines in its log; the line that says
why is its last exception line, and for the common causes we know what to do about it. The
dashboard and the CLI show the cause and the hint first and fold the frames away. Pure
functions of the log text, so every rule has a unit test with no engine behind it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: `ValueError: ...`, `torch.OutOfMemoryError: ...`, `vllm...EngineDeadError: ...`: a
#: Python exception line starts at column 0 (frames are indented) with a dotted class name
#: that says it is an error.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault)(?::\s?.*)?$"
)


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    hint: str | None


def _missing_architectures(text: str, cause: str) -> bool:
    """`transformers serve` reads `config.architectures[0]`: None when the config has none;
    other engines say so, or fail on the missing attribute or key."""
    return (
        ("not subscriptable" in cause and "architectures" in text)
        or "no model architectures" in cause.lower()
        or "'architectures'" in cause
    )


def _out_of_memory(text: str, cause: str) -> bool:
    lowered = text.lower()
    return (
        "out of memory" in lowered
        or "outofmemoryerror" in lowered
        or "cannot allocate memory" in lowered
        or cause.startswith("MemoryError")
    )


def _unsupported_architecture(text: str, cause: str) -> bool:
    lowered = text.lower()
    return (
        "does not recognize this architecture" in lowered
        or "unrecognized configuration class" in lowered
        or "are not supported for now" in lowered
        or ("is not supported" in lowered and "architecture" in lowered)
        or (cause.startswith("AttributeError") and "module 'transformers'" in cause)
    )


def diagnose(log_tail: Sequence[str], reason: str, *, engine: str, model_id: str) -> Diagnosis:
    """The cause (the last exception line of the log, else `reason`) and a hint, if known."""
    cause = next(
        (line.strip() for line in reversed(log_tail) if _EXCEPTION_LINE.match(line.rstrip())),
        reason,
    )
    text = "\n".join(log_tail)
    hint: str | None = None
    if _missing_architectures(text, cause):
        hint = (
            f"The config.json of {model_id} names no `architectures`, so the engine cannot "
            "tell which model class to load. Use a checkpoint whose config.json lists one "
            '(e.g. "architectures": ["LlamaForCausalLM"]), or add it to the config.'
        )
    elif _out_of_memory(text, cause):
        hint = (
            f"{model_id} does not fit in the memory the engine has. Choose a smaller or "
            "quantized model, free memory, or lower TALKTUAH_ENGINE_DTYPE (e.g. bfloat16)."
        )
    elif _unsupported_architecture(text, cause):
        hint = (
            f"The {engine} engine does not support the architecture of {model_id}. Upgrade "
            "the engine, choose another one (TALKTUAH_ENGINE=transformers|vllm|docker), or "
            "pick a model of a supported architecture."
        )
    return Diagnosis(cause=cause, hint=hint)
