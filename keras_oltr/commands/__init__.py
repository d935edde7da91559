"""The command-line tools: flags -> config -> library, each user error one line.

Installed as console scripts (`oltr-train`, `oltr-evaluate`, `oltr-compare`,
`oltr-make-splits`, `oltr-predict`, `oltr-export-saved-model`, `oltr-export-tflite`,
`oltr-export-onnx`); `trainers/*.py` and `export/*.py` launch the same commands.
"""

from keras_oltr.cli import quiet_gpu_probe

quiet_gpu_probe()  # before any command imports TensorFlow
