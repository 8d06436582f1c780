"""CLUEWSC2020: Winograd-style coreference; does span2 (a pronoun) refer to span1? Scored by accuracy.

Gold lines are {"target": {...}, "idx", "label": "true"|"false", "text"}; the example id is "idx". A
prediction line is {"id": idx, "label": "true"|"false"} (the label is a string, as in the official files).
"""

from harness.tasks.classification import ClassificationTask

TASK = ClassificationTask(name="cluewsc2020", id_field="idx", labels=("true", "false"))
