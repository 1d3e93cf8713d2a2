"""DDP: the same fit() under torchrun with 2 CPU processes (gloo) ends with identical weights,
and the DistributedSampler deals each epoch a different shuffle (``set_epoch``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from cakes_lite.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader, TensorDataset
    from cakes_lite.models import resnet3d_tiny
    from cakes_lite.train import cleanup, fit, init_distributed

    class Recorded(TensorDataset):  # remembers which samples this rank read, per epoch
        seen = []

        def set_epoch(self, epoch):  # fit calls it at the start of every epoch
            self.seen.append([])

        def __getitem__(self, i):
            self.seen[-1].append(int(i))
            return super().__getitem__(i)

    out = sys.argv[1]
    info = init_distributed()
    g = torch.Generator().manual_seed(0)
    y = torch.arange(20) % 3
    x = 0.5 * torch.randn(20, 3, 4, 12, 12, generator=g)
    x[torch.arange(20), y] += 1.0
    ds = Recorded(x, y)
    torch.manual_seed(100 + info.rank)  # different init per rank: DDP must start from rank 0's
    model = resnet3d_tiny(num_classes=3, widths=[8, 8, 16], stem_width=8)
    result = fit(model, DataLoader(ds, batch_size=4, shuffle=True), DataLoader(ds, batch_size=3),
                 epochs=2, lr=5e-3, checkpoint_dir=out + "/ckpt", checkpoint_every=2,
                 progress=False)
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
              f"{out}/rank{info.rank}.safetensors")
    with open(f"{out}/history{info.rank}.json", "w") as f:
        json.dump({"world_size": info.world_size, "history": result.history,
                   "seen": Recorded.seen}, f)
    cleanup()
""")


def test_ddp_two_processes_gloo_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = load_file(tmp_path / "rank0.safetensors")
    w1 = load_file(tmp_path / "rank1.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k  # parameters and BN buffers
    seen = {}
    for r in (0, 1):
        rec = json.loads((tmp_path / f"history{r}.json").read_text())
        assert rec["world_size"] == 2
        last = rec["history"][-1]
        assert last["train_n"] == 20 and last["val_n"] == 20  # sums over both ranks, no padding
        # per epoch: 10 training samples, then the validation shard (10 of 20, no padding)
        seen[r] = [epoch[:10] for epoch in rec["seen"]]
        assert len(seen[r]) == 2 and all(len(e) == 10 for e in seen[r])
    for epoch in (0, 1):  # each epoch, the two ranks share the data set without overlap
        assert sorted(seen[0][epoch] + seen[1][epoch]) == list(range(20))
    assert seen[0][0] != seen[0][1] and seen[1][0] != seen[1][1]  # reshuffled every epoch
    # rank 0 wrote the checkpoint, holding the same final weights
    ck = load_checkpoint(tmp_path / "ckpt")
    assert ck.epoch == 2
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, w0[k]), k
