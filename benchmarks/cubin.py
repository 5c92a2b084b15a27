"""Resource usage of a compiled kernel, read by the cuobjdump that ships with Triton (no GPU needed)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile


def cubin_resources(cubin: bytes) -> dict:
    """{"registers", "stack", "static_shared", "local"} from ``cuobjdump -res-usage``; on an unexpected
    output, {"registers": None, "resource_line": the tail of what it printed}."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", text)
    if not found:
        return {"registers": None, "resource_line": text.strip()[-300:]}
    regs, stack, shared, local = (int(x) for x in found.groups())
    return {"registers": regs, "stack": stack, "static_shared": shared, "local": local}
