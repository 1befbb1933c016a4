"""Saving whole models and weights, in Keras' words.

* ``trainer.save("model.keras")`` writes dlkit's archive (``archive``, ``model_file``): the
  architecture, the compile arguments, the weights and the optimizer state, every array with its
  SHA-256; ``dlkit.load_model(path)`` (``loading``) gives the ``Trainer`` back in a fresh process.
* ``@register_serializable()`` makes your own Linen modules and functions loadable (``registry``);
  ``serialize`` / ``deserialize`` turn a model into its JSON config and back (``serialization``).
* ``trainer.save_weights("w.weights.h5")`` / ``load_weights`` use Keras 3's HDF5 layout
  (``keras_h5``), which Keras itself reads and writes.
"""
from dlkit.saving.archive import ArchiveError
from dlkit.saving.model_file import save_model
from dlkit.saving.registry import (
    SerializationError,
    get_registered_name,
    get_registered_object,
    register_serializable,
)
from dlkit.saving.serialization import deserialize, serialize

__all__ = ["ArchiveError", "SerializationError", "deserialize", "get_registered_name", "get_registered_object",
           "register_serializable", "save_model", "serialize"]
