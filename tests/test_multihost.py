"""Multi-host: the same script on 2 processes (``jax.distributed`` with a localhost coordinator, CPU collectives)
trains as 1 process does, each process feeding its own rows of every global batch; a checkpoint the pair writes
restores in one process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, sys
process, processes, port, checkpoints = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
import jax
if processes > 1:
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=processes,
                               process_id=process)
import grain
import numpy as np
import dlkit
from dlkit import layers

x, y = dlkit.datasets.load_digits()
x, y = x[:1280], y[:1280]

def trainer():
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(16, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    return dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

out = {"process": jax.process_index(), "devices": jax.device_count()}
if checkpoints == "restore":  # one process reads what the pair wrote
    restored = trainer()
    out["epoch"] = restored.load_checkpoint(sys.argv[5])
    out["kernel"] = restored.get_weights()[0].ravel()[:200].tolist()
    from_file = trainer()
    from_file.build(x[:1])
    from_file.load_weights(sys.argv[5] + ".weights.h5")  # written by the pair's first process
    out["file_kernel"] = from_file.get_weights()[0].ravel()[:200].tolist()
else:
    arrays = trainer()
    history = arrays.fit(x, y, batch_size=64, epochs=2, validation_split=0.25, verbose=0,
                         callbacks=[dlkit.callbacks.ModelCheckpoint(checkpoints)])
    out["arrays"] = history.history
    arrays.save_weights(checkpoints + ".weights.h5")
    out["kernel"] = arrays.get_weights()[0].ravel()[:200].tolist()
    out["evaluate"] = arrays.evaluate(x, y, batch_size=64, return_dict=True)
    out["predict"] = arrays.predict(x[:20]).tolist()
    # A stream: each process yields its own rows of every global batch of 64 (as a pipeline sharded by
    # process does), the global batch is their concatenation.
    rows = 64 // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    stream = grain.MapDataset.source(np.arange(len(x))).batch(64).map(lambda i: (x[i[mine]], y[i[mine]]))
    out["stream"] = trainer().fit(stream, epochs=2, verbose=0).history
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(processes: int, *args, folder) -> list:
    """Run the script on ``processes`` processes at once; each writes to its own file (a pipe left unread
    while another process is waited for could fill and stall both)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    port = str(_free_port())
    logs = [open(folder / f"process-{processes}-{i}.log", "w+") for i in range(processes)]
    runs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), str(processes), port, *args], env=env,
                             stdout=log, stderr=subprocess.STDOUT, text=True) for i, log in zip(range(processes), logs)]
    results = []
    for run, log in zip(runs, logs):
        run.wait(timeout=300)
        log.seek(0)
        text = log.read()
        log.close()
        assert run.returncode == 0, text[-3000:]
        results.append(json.loads(text.strip().splitlines()[-1]))
    return results


def test_two_processes_train_as_one_and_their_files_restore_in_one(tmp_path):
    """One test, not two sharing a fixture: pytest-xdist would run the four processes once per worker."""
    pair = launch(2, str(tmp_path / "pair"), folder=tmp_path)
    (one,) = launch(1, str(tmp_path / "one"), folder=tmp_path)
    (restored,) = launch(1, "restore", str(tmp_path / "pair"), folder=tmp_path)

    assert [p["devices"] for p in pair] == [2, 2] and sorted(p["process"] for p in pair) == [0, 1]
    assert one["arrays"]["accuracy"][-1] > 0.4  # it learned (chance is 0.1)
    for process in pair:  # every process logs the global values
        for key in ("arrays", "stream"):
            for name, values in one[key].items():
                np.testing.assert_allclose(process[key][name], values, rtol=1e-5, atol=1e-6, err_msg=f"{key} {name}")
        np.testing.assert_allclose(process["kernel"], one["kernel"], atol=1e-5)
        for name, value in one["evaluate"].items():
            np.testing.assert_allclose(process["evaluate"][name], value, rtol=1e-5)
        np.testing.assert_allclose(process["predict"], one["predict"], atol=1e-5)

    # The pair's checkpoint and weights file (written by its first process) restore in one process.
    assert restored["epoch"] == 2
    np.testing.assert_array_equal(restored["kernel"], pair[0]["kernel"])
    np.testing.assert_array_equal(restored["file_kernel"], pair[0]["kernel"])
