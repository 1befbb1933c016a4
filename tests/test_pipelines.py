"""Grain pipelines into fit: one iterator across epochs (a new shuffle each epoch), its position saved in
checkpoints so a resumed run trains on exactly the batches of the uninterrupted one."""
import grain
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.training import pipelines

X, Y = dlkit.datasets.load_digits()
X, Y = X[:600], Y[:600]


def map_pipeline():
    return grain.MapDataset.source(np.arange(600)).shuffle(seed=3).map(lambda i: (X[i], Y[i])).batch(50)


def loader():
    source = grain.sources.RangeDataSource(0, 600, 1)
    sampler = grain.samplers.IndexSampler(600, shuffle=True, seed=5, num_epochs=None)
    pick = grain.transforms.Map if hasattr(grain.transforms, "Map") else grain.transforms.MapTransform

    class Pick(pick):
        def map(self, i):
            return X[i], Y[i]

    return grain.DataLoader(data_source=source, sampler=sampler, operations=[Pick(), grain.transforms.Batch(40)],
                            worker_count=0)


def trainer():
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    return dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def test_a_map_dataset_is_reshuffled_every_epoch_and_one_pass_long():
    source = pipelines.GrainInput(map_pipeline())
    first, second = ([int(b[1][0]) for b in epoch] for epoch in (list(source), list(source)))
    assert source.length == len(first) == len(second) == 12
    assert first != second  # re-iterating the dataset itself would replay the same order
    labels = [np.sort(np.concatenate([b[1] for b in list(source)]))]
    np.testing.assert_array_equal(labels[0], np.sort(Y))  # each epoch is every sample once


@pytest.mark.parametrize("make, steps", [(map_pipeline, None), (loader, 6)], ids=["MapDataset", "DataLoader"])
def test_a_resumed_run_continues_the_pipeline_bit_exactly(tmp_path, make, steps):
    straight = trainer()
    history = straight.fit(make(), epochs=4, steps_per_epoch=steps, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]  # it learns

    first = trainer()
    first.fit(make(), epochs=2, steps_per_epoch=steps, verbose=0,
              callbacks=[dlkit.callbacks.ModelCheckpoint(str(tmp_path / "ckpt"))])
    resumed = trainer()
    epoch = resumed.load_checkpoint(str(tmp_path / "ckpt"))
    assert epoch == 2
    resumed.fit(make(), epochs=4, steps_per_epoch=steps, initial_epoch=epoch, verbose=0)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)

    restarted = trainer()  # the same checkpoint without the pipeline's position: other batches
    restarted.load_checkpoint(str(tmp_path / "ckpt"))
    restarted._saved_input = None
    restarted.fit(make(), epochs=4, steps_per_epoch=steps, initial_epoch=epoch, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(straight.get_weights(), restarted.get_weights()))


def test_an_iter_dataset_epoch_is_one_pass():
    dataset = grain.MapDataset.source(np.arange(600)).map(lambda i: (X[i], Y[i])).to_iter_dataset().batch(100)
    source = pipelines.GrainInput(dataset)
    assert [len(list(source)) for _ in range(3)] == [6, 6, 6]
    assert source.state() == {"fresh": True}  # after a finished pass the next epoch starts anew
    trained = trainer().fit(dataset, epochs=2, verbose=0)
    assert len(trained.history["loss"]) == 2


def test_a_position_from_another_pipeline_is_refused():
    with pytest.raises(ValueError, match="does not fit this Grain pipeline"):
        pipelines.wrap(loader(), 6, {"grain": {"next_index": 3}})


def test_a_tfds_data_source_is_batched_and_shuffled_as_arrays(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    images = X  # float32 features, as stored
    dlkit.datasets.save_arrays("pipeline_digits", {"train": (images[:500], Y[:500]), "test": (images[500:], Y[500:])},
                               data_dir=str(tmp_path))
    source = tfds.data_source("pipeline_digits", split="train", data_dir=str(tmp_path))
    from_source, from_arrays = trainer(), trainer()
    history = from_source.fit(source, batch_size=50, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(history.history["loss"]) == 3
    test = tfds.data_source("pipeline_digits", split="test", data_dir=str(tmp_path))
    scores = from_source.evaluate(test, batch_size=50, return_dict=True)
    assert scores["accuracy"] > 0.6
    from_arrays.set_weights(from_source.get_weights())
    arrays = from_arrays.evaluate(images[500:], Y[500:], return_dict=True)
    np.testing.assert_allclose(scores["accuracy"], arrays["accuracy"])  # every test example, once
    np.testing.assert_allclose(from_source.predict(test, batch_size=50), from_arrays.predict(images[500:]),
                               atol=1e-6)


def test_a_stream_of_single_examples_is_named():
    examples = grain.MapDataset.source(np.arange(100)).map(lambda i: (X[i], Y[i]))
    with pytest.raises(ValueError, match="one example at a time"):
        trainer().fit(examples, epochs=1, verbose=0)
