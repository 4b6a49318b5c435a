"""Backbones by name. Methods receive a built backbone; they never parse names.

Every image backbone maps images (b, c, h, w) to features (b, output_dim); every video backbone
(``VIDEO_BACKBONES``) maps clips (b, c, t, h, w) to (b, output_dim). Each carries an
``output_dim`` attribute.
"""

from collections.abc import Callable

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU blocks and average pooling: a fast backbone for tests and 28-32 px runs.

    With ``grid`` 1 the last feature map (4 x 4 for 28-32 px images) is averaged to one vector
    (global average pooling). With ``grid`` g it is averaged over a g x g grid of cells, and each
    channel's g^2 cell averages are kept (``output_dim`` = 4 ``width`` g^2): the features keep
    the coarse layout, where an object's parts are (``grid`` 4 on a 4 x 4 map: all of it). On
    centred images such as Fashion-MNIST that is a large gain at the same convolutions' cost:
    SimCLR kNN / linear-probe top-1 75.3 / 85.0 with ``tiny_cnn``, 79.0 / 86.9 with
    ``tiny_cnn_grid2``, 80.2 / 87.0 with ``tiny_cnn_grid4`` at a reduced budget (4 epochs x 20k
    images, one seed; ``configs/simclr_grid_fmnist_long.yaml``).

    Args:
        in_channels: channels of the input images.
        width: channels of the first block; doubled twice.
        grid: cells per side of the final pooling.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, grid: int = 1) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.grid = grid
        self.output_dim = chans[-1] * grid * grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (b, c, h, w) -> (b, output_dim); the grid's cells in row-major order
        maps = self.features(x)  # (b, 4 width, h', w')
        if self.grid == 1:
            return maps.mean(dim=(2, 3))
        return nn.functional.adaptive_avg_pool2d(maps, self.grid).flatten(1)


def _resnet(name: str, in_channels: int, small_images: bool) -> nn.Module:
    """A torchvision ResNet (``name`` in ``torchvision.models``) without its classifier (random
    init, nothing downloaded). torchvision is imported here: importing it costs a process
    1.5 s (it loads ``torch._dynamo``), which the tiny backbones never pay.

    ``small_images`` swaps the 7x7/2 stem and max-pool for a 3x3/1 conv and no pool, as in the
    SimCLR paper's CIFAR-10 setup (arXiv 2002.05709, appendix B.9), for 28-64 px inputs.
    """
    import torchvision.models

    model = getattr(torchvision.models, name)(weights=None)
    if small_images or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if small_images else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
    if small_images:
        model.maxpool = nn.Identity()
    model.output_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model


class TinyCNN3D(nn.Module):
    """Four Conv3d-BN-ReLU blocks and global average pooling over (t, h, w): a fast video
    backbone for tests and 32-64 px smoke runs. Time is downsampled once, space three times.

    Args:
        in_channels: channels of the input frames.
        width: channels of the first block; doubled twice.
    """

    def __init__(self, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        strides = [(1, 1, 1), (1, 2, 2), (2, 2, 2), (1, 2, 2)]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(chans[:-1], chans[1:], strides):
            layers += [
                nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.output_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (b, c, t, h, w) -> (b, output_dim)
        return self.features(x).mean(dim=(2, 3, 4))


def _video_resnet(name: str, in_channels: int, small_images: bool) -> nn.Module:
    """A torchvision video ResNet (``name`` in ``torchvision.models.video``: R3D-18, R(2+1)D-18;
    arXiv 1711.11248) without its classifier.

    ``small_images`` makes the stem's spatial stride 1 (for 32-64 px clips); ``in_channels``
    other than 3 replaces the stem's first convolution.
    """
    import torchvision.models.video

    model = getattr(torchvision.models.video, name)(weights=None)
    stem = model.stem[0]
    if small_images or in_channels != 3:
        stride = (1, 1, 1) if small_images else stem.stride
        model.stem[0] = nn.Conv3d(
            in_channels, stem.out_channels, stem.kernel_size, stride, stem.padding, bias=False
        )
    model.output_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model


_BACKBONES: dict[str, Callable[[int, bool], nn.Module]] = {
    "tiny_cnn": lambda in_channels, small: TinyCNN(in_channels),
    "tiny_cnn_grid2": lambda in_channels, small: TinyCNN(in_channels, grid=2),
    "tiny_cnn_grid4": lambda in_channels, small: TinyCNN(in_channels, grid=4),
    "tiny_cnn_grid4_w48": lambda in_channels, small: TinyCNN(in_channels, width=48, grid=4),
    "resnet18": lambda in_channels, small: _resnet("resnet18", in_channels, small),
    "resnet50": lambda in_channels, small: _resnet("resnet50", in_channels, small),
    "tiny_cnn3d": lambda in_channels, small: TinyCNN3D(in_channels),
    "r3d_18": lambda in_channels, small: _video_resnet("r3d_18", in_channels, small),
    "r2plus1d_18": lambda in_channels, small: _video_resnet("r2plus1d_18", in_channels, small),
}
VIDEO_BACKBONES = frozenset({"tiny_cnn3d", "r3d_18", "r2plus1d_18"})  # input (b, c, t, h, w)


def memory_format(video: bool, channels_last: bool = True) -> torch.memory_format:
    """The memory format for a model's weights and its inputs: channels-last (``channels_last_3d``
    for video backbones' (b, c, t, h, w) clips) or, with ``channels_last`` false, contiguous.

    Channels-last is ~1.2-1.4x faster per training step on CPU (``bench/channels_last.py``) and
    what cuDNN's tensor-core convolutions want; it changes no result beyond rounding.
    """
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if video else torch.channels_last


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(_BACKBONES)


def build_backbone(name: str, in_channels: int = 3, small_images: bool = False) -> nn.Module:
    """Build a randomly initialised backbone by name.

    Args:
        name: one of :func:`available_backbones`.
        in_channels: image channels.
        small_images: use the small-image stem (ResNets only; the tiny CNN is always small).

    Returns:
        A module mapping (b, in_channels, h, w) (video backbones: (b, in_channels, t, h, w)) to
        (b, output_dim), with ``output_dim`` set.
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; allowed: {', '.join(available_backbones())}")
    return _BACKBONES[name](in_channels, small_images)
