"""Which fused kernels PyTorch's scaled-dot-product attention may choose on a GPU.

PyTorch 2.10 and later try cuDNN's fused attention first on data-centre Hopper and Blackwell GPUs
(H100, H200, B200) whose cuDNN is newer than 9.15, which the CUDA 13 wheels bring; before that,
and on every other device, the order was flash, memory-efficient, math. cuDNN builds an execution
plan for every new shape of its inputs (a few hundred milliseconds each in other projects'
reports), and leap's shapes change all the time: every packed training row has its own length
and every decoding step adds a key. fp32 inputs never reach cuDNN (it computes in 16 bits), so
only bf16 and fp16 work is affected.

What was measured: on an H200 with torch 2.11 (CUDA 13), a leap training step in bf16 autocast
took 1.9x as long as in fp32, and 100 household rollouts of horizon 20 in bf16 about 90 ms per
decoding step of a 135M model. That cuDNN's per-shape plans are the cause is not measured yet:
``benchmarks/attention_kernels.py`` times each kernel on leap's shapes, and
``benchmarks/gpu/check.sh`` runs training and rollouts with and without cuDNN.

By default leap leaves cuDNN out for its own model calls (``cudnn_attention: false`` in the
``student`` and ``train`` sections), which is the order PyTorch used before. (PyTorch's own
switch, the environment variable ``TORCH_CUDNN_SDPA_DEPRIORITIZED=1`` set before the first
attention call, moves cuDNN back to the end of its order for the whole process.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def attention_kernels(device: str, cudnn: bool) -> Iterator[None]:
    """Within the block, on a CUDA ``device`` without ``cudnn``: attention may use the flash,
    memory-efficient and math kernels only. Elsewhere, or with ``cudnn``, PyTorch's own choice.
    The previous choice is restored after the block (the switches are process-wide)."""
    if cudnn or not device.startswith("cuda"):
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def attention_label(implementation: str, device: str, cudnn: bool) -> str:
    """How a model's attention is described in logs and metrics: "sdpa without cuDNN" where
    :func:`attention_kernels` leaves cuDNN out."""
    if implementation == "sdpa" and device.startswith("cuda") and not cudnn:
        return "sdpa without cuDNN"
    return implementation
