import pytest
import torch

from cl_core import VIDEO_BACKBONES, available_backbones, build_backbone, memory_format


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


@pytest.mark.parametrize(("name", "shape"), [("tiny_cnn", (4, 3, 28, 28)), ("tiny_cnn3d", (2, 3, 4, 16, 16))])
def test_memory_format__channels_last_gives_the_contiguous_features(name, shape):
    video = name in VIDEO_BACKBONES
    fmt = memory_format(video)
    assert fmt == (torch.channels_last_3d if video else torch.channels_last)
    assert memory_format(video, channels_last=False) == torch.contiguous_format
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=3, small_images=True).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = net(x)
        net = net.to(memory_format=fmt)
        got = net(x.contiguous(memory_format=fmt))
    assert next(p for p in net.parameters() if p.dim() == x.dim()).is_contiguous(memory_format=fmt)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_tiny_cnn_grid2__concatenates_the_cells_averages_in_row_major_order():
    torch.manual_seed(0)
    net = build_backbone("tiny_cnn_grid2", in_channels=1).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        maps = net.features(x)  # (3, 128, 4, 4): 2 x 2 cells of 2 x 2
        out = net(x)
    assert maps.shape[2:] == (4, 4) and out.shape == (3, net.output_dim) == (3, 4 * 128)
    cells = [maps[:, :, r : r + 2, c : c + 2].mean(dim=(2, 3)) for r in (0, 2) for c in (0, 2)]
    # adaptive pooling to 2 x 2 then flatten: channel-major, each channel's 4 cells row-major
    expected = torch.stack(cells, dim=2).flatten(1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    global_pool = build_backbone("tiny_cnn", in_channels=1)
    global_pool.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(global_pool.eval()(x), maps.mean(dim=(2, 3)))
    whole = build_backbone("tiny_cnn_grid4", in_channels=1)
    whole.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(whole.eval()(x), maps.flatten(1))  # a 4 x 4 grid on a 4 x 4 map


def test_tiny_cnn_grid4_w48__is_the_grid4_encoder_one_and_a_half_times_as_wide():
    torch.manual_seed(0)
    wide, narrow = (build_backbone(n, in_channels=1).eval() for n in ("tiny_cnn_grid4_w48", "tiny_cnn_grid4"))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        maps, out = wide.features(x), wide(x)
    assert maps.shape == (2, 192, 4, 4) and wide.output_dim == 3072 == narrow.output_dim * 3 // 2
    torch.testing.assert_close(out, maps.flatten(1))
    widths = [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [48, 96, 192, 192] == [c * 3 // 2 for c in (32, 64, 128, 128)]
