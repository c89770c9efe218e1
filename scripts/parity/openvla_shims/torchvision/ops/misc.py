"""torchvision.ops.misc stand-in (OpenVLA parity shim): timm lists FrozenBatchNorm2d in a lookup
table at import; the ViTs here never build one."""


class FrozenBatchNorm2d:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("torchvision is shimmed in the OpenVLA parity harness: ops.misc.FrozenBatchNorm2d")
