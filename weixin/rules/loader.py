"""The replies file's YAML, read safely: fast, or with each mapping's line for messages that point somewhere."""

from __future__ import annotations

import yaml

from weixin.rules.model import RulesError


class _LineDict(dict):
    line: int = 0


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader whose mappings remember their line, for error messages that point somewhere."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    mapping = _LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# libyaml's parser reads a large file several times faster than the pure-Python one that records lines.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(text: str, path: str, with_lines: bool = False) -> dict:
    """The file's top-level mapping; `with_lines` records each mapping's line (`.line`), at a slower parse.
    Raises RulesError for YAML that does not parse or is not a mapping."""
    loader = _LineLoader if with_lines else _FAST_LOADER
    try:
        document = yaml.load(text, Loader=loader)  # both are safe loaders
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise RulesError(f"{path}{at}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if document is None:
        document = _LineDict()
    if not isinstance(document, dict):
        raise RulesError(f"{path}: the file must be a mapping with keywords/default/messages/events/menu/scenes")
    return document

