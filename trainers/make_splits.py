"""Make OLTR-format long-tailed split files from a labelled list or a class-folder tree.

The command lives in `keras_oltr.commands.make_splits` (installed as `oltr-make-splits`);
`--help` describes it.
"""

from keras_oltr.commands.make_splits import console_main

if __name__ == "__main__":
    console_main()
