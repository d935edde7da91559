"""Classifies image files with an exported model of any format.

The command lives in `keras_oltr.commands.predict` (installed as `oltr-predict`);
`--help` describes it.
"""

from keras_oltr.commands.predict import console_main

if __name__ == "__main__":
    console_main()
