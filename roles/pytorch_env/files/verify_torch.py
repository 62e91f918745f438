# Passed to the venv's python with -c by the pytorch_env role; argv[1] is auto|cpu|cuda.
import json
import sys
import time

import torch

import kumolab_workloads
from kumolab_workloads import common

requested = sys.argv[1] if len(sys.argv) > 1 else "auto"
try:
    device = common.select_device(requested)
except RuntimeError as exc:
    print(f"{exc} (torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
    sys.exit(2)
n = 1024
a = torch.randn(n, n, device=device)
b = torch.randn(n, n, device=device)
common.synchronize(device)
t0 = time.perf_counter()
c = a @ b
common.synchronize(device)
ms = (time.perf_counter() - t0) * 1000
ref = a[:8].cpu().double() @ b.cpu().double()
rel_err = ((c[:8].cpu().double() - ref).abs().max() / ref.abs().max()).item()
if not rel_err < 1e-2:
    print(f"matmul on {device} is wrong: relative error {rel_err:.2e}", file=sys.stderr)
    sys.exit(3)
print(
    json.dumps(
        {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "device": device.type,
            "device_name": common.device_name(device),
            "n": n,
            "ms": ms,
            "rel_err": rel_err,
            "workloads": kumolab_workloads.__file__,
        }
    )
)
