import pytest
import torch


@pytest.fixture(autouse=True)
def _two_threads():
    # one thread policy for the whole suite (the CI machine has 2 cores; more threads only
    # add contention), restored after each test
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# a tiny, fast run: learnable synthetic data, a narrow small CNN, 2-step PGD-AT
TINY = [
    "data.name=synthetic",
    "data.batch_size=64",
    "model=small_cnn",
    "method=pgd_at",
    "method.steps=2",
    "method.alpha=4/255",
    "train.epochs=2",
    "train.log_every=2",
    "eval.n=64",
    "eval.final_n=64",
    "eval.attack=pgd20",
]


@pytest.fixture
def tiny_overrides(tmp_path):
    return TINY + [f"out_dir={tmp_path / 'runs'}"]
