"""DistributedDataParallel: 2 processes with gloo on CPU (launched by torchrun) train the tiny model
for a few steps; both ranks end with identical weights, and only rank 0 writes files."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from _train_helpers import REPO, cli_env, tiny_config, write_config
from diffussm_lib import training as C

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import torch
    from safetensors.torch import save_file
    from _train_helpers import synthetic_dataset
    from diffussm_lib.config import load_config
    from diffussm_lib.training import Trainer, shutdown_distributed

    cfg = load_config({cfg!r})
    out = {out!r}
    trainer = Trainer(cfg, out + "/run", dataset=synthetic_dataset(cfg, n=64), progress=False)
    assert trainer.dist.world_size == 2 and trainer.local_batch == cfg.train.batch_size // 2
    assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
    init = {{k: v.clone() for k, v in trainer.bare_model.state_dict().items()}}
    trainer.train()
    r = trainer.dist.rank
    save_file({{k: v.contiguous() for k, v in trainer.bare_model.state_dict().items()}}, f"{{out}}/rank{{r}}.safetensors")
    save_file({{k: v.contiguous() for k, v in trainer.ema.state_dict().items()}}, f"{{out}}/ema{{r}}.safetensors")
    if r == 0:
        save_file(init, out + "/init.safetensors")
    shutdown_distributed()
""")


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    cfg = write_config(
        tiny_config(max_steps=3, checkpoint_every=3, log_every=1), tmp_path / "tiny.yaml"
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(REPO / "tests"), cfg=str(cfg), out=str(tmp_path)))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    init = load_file(tmp_path / "init.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    e0, e1 = load_file(tmp_path / "ema0.safetensors"), load_file(tmp_path / "ema1.safetensors")
    assert all(torch.equal(e0[k], e1[k]) for k in e0), "EMA copies diverged"
    assert any(not torch.equal(r0[k], init[k]) for k in r0), "no training happened"
    ck = C.load_checkpoint(tmp_path / "run")
    assert ck.step == 3 and ck.extra["world_size"] == 2
    assert all(torch.equal(ck.model[k], r0[k]) for k in r0)
    # rank 0 alone logged: one line per step, and one "training ..." banner
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    assert (p.stdout + p.stderr).count("training tiny") == 1
