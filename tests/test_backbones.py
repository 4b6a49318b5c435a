import pytest
import torch

from cl_core import available_backbones, build_backbone


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_build_backbone__maps_small_images_to_output_dim_features(name, in_channels):
    net = build_backbone(name, in_channels=in_channels, small_images=True).eval()
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, 28, 28))
    assert out.shape == (2, net.output_dim)


def test_small_image_stem__keeps_spatial_resolution_in_the_stem():
    small = build_backbone("resnet18", small_images=True)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    assert build_backbone("resnet18").conv1.kernel_size == (7, 7)


def test_resnet50__has_2048_features():
    assert build_backbone("resnet50").output_dim == 2048


def test_build_backbone__unknown_name_lists_allowed_names():
    with pytest.raises(ValueError, match="allowed: " + ", ".join(available_backbones())):
        build_backbone("vit_h")
