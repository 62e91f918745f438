"""kumolab workloads: the code the GPU lab's roles and notebooks run on the lab host.

Modules (each a CLI via ``python -m kumolab_workloads.<name>``):

- ``idx``     read IDX files (the original MNIST format) and verify their SHA-256
- ``mnist``   train a CNN on MNIST (``textbook`` and ``fast`` configurations)
- ``matmul``  CPU vs GPU square matmul benchmark (fp32, tf32, bf16)
- ``plots``   shared matplotlib helpers (Agg backend, no display needed)

The package has no install step: the ``pytorch_env`` role copies it to the host and adds its
parent directory to the PyTorch venv with a ``.pth`` file.
"""

__version__ = "0.1.0"
