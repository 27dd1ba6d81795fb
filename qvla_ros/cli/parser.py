# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The argument parser of both commands: every option's --help shows its default."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; descriptions and epilogs kept as written."""

    def _get_help_string(self, action):
        help_text = action.help or ''
        if 'default' in help_text or action.default in (None, False, argparse.SUPPRESS) \
                or not action.option_strings:
            return help_text  # it says its default itself, or has none worth showing
        return help_text + ' (default: %(default)s)'


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands share its formatter and show every default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        """Add an option; one without help text still lists its default (if it has one)."""
        default = kwargs.get('default')
        if not kwargs.get('help') and default not in (None, False, argparse.SUPPRESS) \
                and kwargs.get('action') not in ('store_true', 'store_false', 'help'):
            kwargs['help'] = 'default: %(default)s'
        return super().add_argument(*args, **kwargs)
