"""The small interfaces a task composes (``thawkit.tasks.base.Task`` inherits them all, with defaults):

- ``DataRole``: reading and validating the data, the texts and class counts the guards look at;
- ``ModelRole``: building, encoding, collating, saving and loading the model;
- ``ScoringRole``: metrics, the selection metric, distillation's soft loss, speed probes;
- ``ServingRole``: HTTP routes and their schemas, the model card's tags and usage snippet;
- ``ExportRole``: what ONNX export traces and outputs;
- ``AdviceRole``: the advisor's rules for the task, and the measurements they cite;
- ``UpdateRole``: continuing a run on new data (``thawkit update``).

Code outside ``tasks/`` reaches task-specific behaviour only through these (tests/test_architecture_rules.py
fails when it compares against a task's name).
"""

from thawkit.tasks.roles.advice import AdviceInput, AdviceRole, Rule, Situation
from thawkit.tasks.roles.data import DataRole
from thawkit.tasks.roles.export import ExportRole
from thawkit.tasks.roles.model import ModelRole
from thawkit.tasks.roles.scoring import ScoringRole
from thawkit.tasks.roles.serving import Route, ServedCall, ServeRequest, ServingRole
from thawkit.tasks.roles.update import UpdateData, UpdateRole

__all__ = ["AdviceInput", "AdviceRole", "DataRole", "ExportRole", "ModelRole", "Route", "Rule", "ScoringRole", "ServeRequest",
           "ServedCall", "ServingRole", "Situation", "UpdateData", "UpdateRole"]
