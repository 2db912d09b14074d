"""A study remembers the data it was made with: a study whose data changed on disk since is refused.

The identity is :attr:`DataBundle.identity <archsearch.data.bundle.DataBundle.identity>`, a digest of the images,
labels and class names as loaded (where they live and their file times do not count, so a copy of the same
folder on another host is the same data). It is stored in the study on first use; a study made before it
existed takes the data it is next run with. ``accept_change`` (``archsearch search --accept-data-change``,
``archsearch.run(..., accept_data_change=True)``) goes on with the new data and stores its identity.
"""

from __future__ import annotations

import optuna

from archsearch.config.study_config import StudyConfig
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle
from archsearch.study.study_record import StudyRecord


def check_data_identity(study: optuna.Study, config: StudyConfig, data: DataBundle, *, accept_change: bool = False,
                        ) -> None:
    """Store ``data``'s identity in ``study``, or refuse where the study holds another one (``accept_change``: store
    the new one instead)."""
    stored = StudyRecord.of(study).data_identity
    if stored == data.identity:
        return
    if stored is None or accept_change:
        StudyRecord(data_identity=data.identity).write(study)
        return
    raise ConfigError(
        f"the data of study {config.name!r} changed since the study was made (images, labels or class names now "
        f"{data.identity[:12]}, then {str(stored)[:12]}): its trials were scored on other data. Restore the data, "
        f"or start a new study (another `name`), or go on with the new data: `archsearch search --accept-data-change` "
        f"(in Python: `accept_data_change=True`)",
        path=config.source, key="dataset",
    )
