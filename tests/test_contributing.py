"""CONTRIBUTING.md's paper-file template is real code: it trains on the one loop, as written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _template(tmp_path: Path):
    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "template_algo.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("template_algo", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["template_algo"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _rows(h):
    return [{k: v for k, v in r.items() if k != "train/wall_seconds"} for r in h.rows]


def test_the_template_trains_resumes_and_generates_its_flags(tiny, tmp_path):
    import argparse

    from spkit.config import add_config_arguments

    mod = _template(tmp_path)
    kw = dict(problems=4, k=4, checkpoint_every=1, tensorboard=False)  # spkit-tiny solves some
    straight = mod.train(mod.Config(steps=2, out=str(tmp_path / "a"), **kw))
    assert [r["step"] for r in straight.rows] == [1, 2] and (straight.final_dir / "model.safetensors").exists()
    assert any(r["losses/policy"] != 0 for r in straight.rows)  # some groups have a signal
    mod.train(mod.Config(steps=1, out=str(tmp_path / "b"), **kw))
    resumed = mod.train(mod.Config(steps=2, out=str(tmp_path / "b"), resume=True, **kw))
    assert _rows(straight) == _rows(resumed)
    final = (straight.final_dir / "model.safetensors").read_bytes()
    assert final == (resumed.final_dir / "model.safetensors").read_bytes()
    p = argparse.ArgumentParser()
    add_config_arguments(p, mod.Config)
    assert "completions per problem" in p.format_help()
