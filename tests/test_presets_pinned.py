"""Every shipped preset keeps its reproduce fingerprint, so cached reproduce runs are reused
across refactors (fingerprints recorded before the layering redesign, issue 11). Re-pinned for
issue 19: the 50 presets of the inverse family (iat, uiat, uiat_oneoff, <base>+uiat) changed
by design (target_bn_mode, adv_features), so their runs trained with the old eval-mode target are
not reused; every other preset kept its fingerprint. The two ImageNet presets (issue 20) were added
with their fingerprints."""

import json
from pathlib import Path

import pytest

from robustrain.config import CONFIG_DIR, load_config
from robustrain.reproduce.plan import config_fingerprint

PINNED = json.loads((Path(__file__).parent / "data" / "preset_fingerprints.json").read_text())


def test_every_preset_is_pinned():
    assert sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml")) == sorted(PINNED)


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_preset_fingerprint_unchanged(preset):
    assert config_fingerprint(load_config(CONFIG_DIR / preset)) == PINNED[preset]
