"""CSL: do these keywords all belong to this paper abstract? Scored by accuracy.

Gold lines are {"id", "abst", "keyword": [...], "label": "0"|"1"}; a prediction line is {"id", "label"} with
the label the string "0" or "1", as in the official files.
"""

from harness.tasks.classification import ClassificationTask

TASK = ClassificationTask(name="csl", id_field="id", labels=("0", "1"))
