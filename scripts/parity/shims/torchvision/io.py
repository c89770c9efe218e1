"""torchvision.io stand-in: video reading is not available (parity harness shim)."""


def read_video(*args, **kwargs):
    raise NotImplementedError("torchvision is shimmed in the parity harness: videos are not supported")
