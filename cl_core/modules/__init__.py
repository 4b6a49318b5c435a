"""Building blocks shared by methods: heads, EMA targets, queues."""

from cl_core.modules.ema import ema_update, frozen_copy
from cl_core.modules.heads import projection_mlp
from cl_core.modules.memory_bank import MemoryBank
from cl_core.modules.queue import FeatureQueue

__all__ = ["FeatureQueue", "MemoryBank", "ema_update", "frozen_copy", "projection_mlp"]
