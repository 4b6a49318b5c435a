"""Bad-input accounting of a corpus read: counts, the first examples, and the limit check."""

import logging
from dataclasses import dataclass, field

LOG = logging.getLogger(__name__)
MAX_EXAMPLES = 20


@dataclass
class CorpusReport:
    """Bad-file accounting of a corpus read.

    Attributes:
        total: rows read (files, Parquet rows or array images).
        bad: rows skipped as empty, unreadable or truncated.
        bad_examples: the first (path, reason) pairs, up to ~20.
    """

    total: int
    bad: int
    bad_examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return self.bad / self.total if self.total else 0.0

    def as_metrics(self) -> dict[str, int]:
        return {"data/bad_files": self.bad, "data/total_files": self.total}


def check_corpus(report: CorpusReport, max_bad_fraction: float, where: str) -> None:
    """Raise if too much of the corpus is bad, else log the skipped files (up to 20).

    Raises:
        ValueError: ``report.bad_fraction > max_bad_fraction`` or no good image; names up to 5
            examples.
    """
    if report.bad == 0:
        return
    examples = "; ".join(f"{path}: {reason}" for path, reason in report.bad_examples[:5])
    summary = f"{report.bad} of {report.total} images in {where} are bad ({report.bad_fraction:.1%})"
    if report.bad_fraction > max_bad_fraction or report.bad == report.total:
        why = f"> data.max_bad_fraction={max_bad_fraction}" if report.bad < report.total else "none readable"
        raise ValueError(f"{summary}: {why}; e.g. {examples}")
    listed = "\n  ".join(f"{path}: {reason}" for path, reason in report.bad_examples)
    LOG.warning("%s and were skipped; the first %d:\n  %s", summary, len(report.bad_examples), listed)
