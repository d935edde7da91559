"""Exports a trained workdir's checkpoint as a SavedModel in the TF Serving layout.

The command lives in `keras_oltr.commands.to_saved_model` (installed as `oltr-export-saved-model`);
`--help` describes it.
"""

from keras_oltr.commands.to_saved_model import console_main

if __name__ == "__main__":
    console_main()
