"""Workflow files → the immutable model: load (YAML 1.2 with positions), validate, plan.

load_workflow(path, text=None, *, display_path=None) -> Workflow
parse_workflow(path, text, display_path=None) -> Workflow   load_workflow, memoized
load_action(path, text=None, *, display_path=None) -> Action
    both raise conveyor.errors.WorkflowError listing every Diagnostic
validate.RULES, validate.check(document)      the named rules and their codes
validate_cli.validate_paths(paths, out, err)  the `conveyor validate` command
yamlload.load_yaml(text, file), yamlload.to_plain(node)
"""

from conveyor.workflow.parse import load_action, load_workflow, parse_workflow

__all__ = ["load_action", "load_workflow", "parse_workflow"]
