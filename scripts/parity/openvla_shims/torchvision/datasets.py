"""torchvision.datasets stand-in (OpenVLA parity shim): timm.data.dataset_factory imports dataset
classes at import time; none is used here."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(f"torchvision is shimmed in the OpenVLA parity harness: datasets.{name}")

    Unavailable.__name__ = name
    return Unavailable
