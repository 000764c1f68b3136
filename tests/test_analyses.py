import numpy as np
import pytest
import torch

from robustrain.cli import main
from robustrain.config import load_config
from robustrain.data import load_split
from robustrain.eval.analyses import ANALYSES
from robustrain.eval.images import image_grid, read_png, rescale_symmetric, write_png
from robustrain.train import load_checkpoint
from robustrain.train.trainer import fit


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((3, 5, 7)).astype(np.float32)
    write_png(img, tmp_path / "a.png", scale=2)
    back = read_png(tmp_path / "a.png")
    assert back.shape == (3, 10, 14)
    expected = (img * 255 + 0.5).astype(np.uint8).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(back, expected)


def test_grid_layout_and_rescale():
    tiles = np.stack([np.full((1, 2, 2), v, np.float32) for v in (0.0, 0.25, 0.5)])
    grid = image_grid(tiles, ncols=2, pad=1, fill=1.0)
    assert grid.shape == (1, 7, 7)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 4] == 0.25 and grid[0, 4, 1] == 0.5
    assert grid[0, 0, 0] == 1.0  # padding
    z = np.array([-2.0, 0.0, 1.0])
    assert rescale_symmetric(z).tolist() == [0.0, 0.5, 0.75]


def test_registry_has_perturbations():
    assert "perturbations" in ANALYSES


def test_perturbation_figure_shows_z_and_x_plus_z(tmp_path, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "method=uiat", "method.steps=2", "name=u"])
    fit(cfg, progress=False, verbose=False)
    run = tmp_path / "runs" / "u"
    assert main(["analyze", "perturbations", str(run)]) == 0
    png = read_png(run / "perturbations.png").astype(np.float32) / 255
    z = load_checkpoint(run / "last.pt")["method"]["z"].numpy()
    c, h, w = z.shape[1:]
    scale, pad = 4, 2
    images, labels = load_split("synthetic", "test")

    def tile(row, col):
        top, left = (pad + row * (h + pad)) * scale, (pad + col * (w + pad)) * scale
        return png[:, top : top + h * scale : scale, left : left + w * scale : scale]

    for cls in (0, z.shape[0] - 1):
        x = images[int((labels == cls).nonzero()[0])].float().numpy() / 255
        np.testing.assert_allclose(tile(0, cls), rescale_symmetric(z)[cls], atol=1 / 255)
        np.testing.assert_allclose(tile(1, cls), x, atol=1 / 255)
        np.testing.assert_allclose(tile(2, cls), np.clip(x + z[cls], 0, 1), atol=1 / 255)
    assert torch.as_tensor(z).abs().max() <= 4 / 255 + 1e-6  # eps' ball


def test_perturbations_of_a_non_universal_method_is_a_clear_error(tmp_path, tiny_overrides, capsys):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "name=p"])
    fit(cfg, progress=False, verbose=False)
    assert main(["analyze", "perturbations", str(tmp_path / "runs" / "p")]) == 2
    assert "no universal inverse perturbations" in capsys.readouterr().err
