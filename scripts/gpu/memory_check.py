"""The engine pool's GPU memory readings against a real GPU and the real nvidia-smi.

CI has no GPU, so tests run host_memory.py against a stand-in nvidia-smi
(tests/support/nvidia_smi.py). This runs the same functions where the real one is:

    PYTHONPATH=src python3 scripts/gpu/memory_check.py [--gib 2]

It needs only the standard library and torch (the GPU machine's python has both, not
TalkTuah's other dependencies: host_memory.py is loaded alone). Steps, each PASS or FAIL:

1. the GPUs' total memory, as a percentage TALKTUAH_MEMORY_BUDGET is read for vLLM, agrees
   with torch's `mem_get_info` total;
2. a child process in a session of its own (as TalkTuah starts engines) allocates `--gib` GiB
   with torch; its process group's GPU memory is measured as an engine's would be, and must
   hold the allocation (plus the CUDA context) — or nvidia-smi shows no processes here (a
   container's PID namespace), which the pool handles by keeping the estimate: reported as
   such, with what nvidia-smi printed;
3. once the child has exited, its group measures 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20

CHILD = """
import os, sys, time, torch
held = torch.empty(int(sys.argv[1]) * 2**30, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("ready", os.getpid(), flush=True)
time.sleep(120)
"""


def load_host_memory() -> ModuleType:
    """src/talktuah/host_memory.py alone (the package's __init__ needs no dependency, but
    its siblings do)."""
    path = ROOT / "src" / "talktuah" / "host_memory.py"
    spec = importlib.util.spec_from_file_location("host_memory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gib", type=int, default=2)
    args = p.parse_args()
    host = load_host_memory()
    import torch

    results: dict[str, object] = {}
    failed = False

    def report(name: str, ok: bool, detail: str) -> None:
        nonlocal failed
        failed |= not ok
        results[name] = {"ok": ok, "detail": detail}
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    totals = host.gpu_memory_totals()
    torch_total = sum(torch.cuda.mem_get_info(i)[1] for i in range(torch.cuda.device_count()))
    ok = bool(totals) and abs(sum(totals) - torch_total) <= 64 * MIB
    report("gpu totals", ok, f"nvidia-smi {totals} vs torch {torch_total} bytes")

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(args.gib)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.startswith("ready"), f"the child did not allocate: {line!r}"
        time.sleep(1)
        raw = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        members = set(host.process_group_members(child.pid))
        seen = sum(used for pid, used in host.gpu_process_memory() if pid in members)
        wanted = args.gib * 2**30
        if not host.gpu_process_memory():
            report(
                "group measure", True,
                f"nvidia-smi lists no processes here (PID namespace): the pool keeps its "
                f"estimate; nvidia-smi printed {raw!r}",
            )  # fmt: skip
        else:
            ok = wanted <= seen <= wanted + 2 * 2**30
            report("group measure", ok, f"{seen} bytes for a {wanted}-byte allocation; "
                   f"members {sorted(members)}; nvidia-smi printed {raw!r}")  # fmt: skip
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    time.sleep(1)
    gone = sum(used for pid, used in host.gpu_process_memory() if pid == child.pid)
    report("after exit", gone == 0, f"{gone} bytes held by the exited child's pid")
    out = os.environ.get("OUT")
    if out:
        Path(out, "memory_check.json").write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
