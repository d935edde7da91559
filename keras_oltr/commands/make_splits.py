"""Make OLTR-format long-tailed split files from a labelled list or a class-folder tree.

    python trainers/make_splits.py --image_root=/data/flowers --out_dir=splits \
        --profile=pareto --num_open_classes=10 --val_per_class=20 --test_per_class=50

Writes {prefix}_{train,val,test,open[,open_val]}.txt and {prefix}_classes.txt, usable as
`get_dataset("custom", data_root=..., train=..., class_names_file=...)`.
"""

from absl import flags

from keras_oltr.cli import print_error, run
from keras_oltr.data import make_splits

FLAGS = flags.FLAGS
flags.DEFINE_string("image_root", None, "Folder-per-class image tree (paths become relative).")
flags.DEFINE_string("input_list", None, "Alternative input: file of `relative/path label` lines.")
flags.DEFINE_string("out_dir", None, "Where to write the split files.")
flags.DEFINE_string("prefix", "LT", "File name prefix, e.g. LT -> LT_train.txt.")
flags.DEFINE_enum("profile", "pareto", list(make_splits.PROFILES), "Long-tail profile.")
flags.DEFINE_float("imbalance_factor", 100.0, "n_max / n_min (exponential profile).")
flags.DEFINE_float("pareto_alpha", 6.0, "Pareto shape (pareto profile).")
flags.DEFINE_integer("n_max", None, "Largest train class (default: all that is left).")
flags.DEFINE_integer("n_min", 5, "Smallest train class (pareto profile).")
flags.DEFINE_integer("num_open_classes", 0, "Classes held out as the open set.")
flags.DEFINE_integer("val_per_class", 20, "Val images per known class.")
flags.DEFINE_integer("test_per_class", 50, "Test images per known class.")
flags.DEFINE_integer("open_per_class", None, "Open-test images per open class.")
flags.DEFINE_integer("open_val_per_class", 0, "Open-val images per open class.")
flags.DEFINE_integer("seed", 0, "Seed of every random choice.")
flags.mark_flag_as_required("out_dir")


def main(argv):
    del argv
    if (FLAGS.image_root is None) == (FLAGS.input_list is None):
        return print_error("Give exactly one of --image_root and --input_list.")
    if FLAGS.image_root is not None:
        items = make_splits.scan_class_folders(FLAGS.image_root)
    else:
        items = make_splits.read_labelled_list(FLAGS.input_list)
    result = make_splits.make_long_tail_splits(
        items,
        profile=FLAGS.profile,
        num_open_classes=FLAGS.num_open_classes,
        val_per_class=FLAGS.val_per_class,
        test_per_class=FLAGS.test_per_class,
        open_per_class=FLAGS.open_per_class,
        open_val_per_class=FLAGS.open_val_per_class,
        n_max=FLAGS.n_max,
        n_min=FLAGS.n_min,
        imbalance_factor=FLAGS.imbalance_factor,
        pareto_alpha=FLAGS.pareto_alpha,
        seed=FLAGS.seed,
    )
    paths = make_splits.write_split_files(result, FLAGS.out_dir, FLAGS.prefix)
    counts = result.train_counts
    print(
        f"{len(result.class_names)} known classes (train max {counts.max()} / min "
        f"{counts.min()}, {counts.sum()} images), {len(result.open_class_names)} open classes"
    )
    for split, path in paths.items():
        print(f"  {split}: {path}")


def console_main():
    """The `oltr-make-splits` console script (and `python trainers/make_splits.py`)."""
    run(main, doc=__doc__)


if __name__ == "__main__":
    console_main()
