"""What the trainer consumes, for images or video (``pipelines.data.build.build_datasets``)."""

from dataclasses import dataclass

import ray.data

from pipelines.data.report import CorpusReport


@dataclass
class Datasets:
    """What the trainer consumes.

    Attributes:
        train: rows ``view_0`` .. ``view_{k-1}`` uint8 (c, s_i, s_i) (geometric-only crops when
            ``augment.colour_on_device``, else fully augmented and quantised) and ``label``
            int64 (-1 unlabelled); new views every time it is iterated.
        eval_train: kNN memory bank rows ``image`` uint8 (c, s, s), ``label`` int64; or None.
        eval_test: kNN query rows, same columns; None when the corpus has no labels.
        report: bad-file accounting.
        num_train_rows: rows of ``train``.
    """

    train: ray.data.Dataset
    eval_train: ray.data.Dataset | None
    eval_test: ray.data.Dataset | None
    report: CorpusReport
    num_train_rows: int
    clock: str | None = None  # the streamed reader's epoch clock (pipelines.data.epochs), by name
    clock_handle: object = None  # keeps the clock's actor alive as long as these datasets
