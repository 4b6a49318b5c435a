"""Reading corpora with Ray Data: readers, the decoded corpus, per-epoch augmentation, video clips."""
