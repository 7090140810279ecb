"""Errors a user can cause and fix; the CLI prints them as one line."""


class UserError(Exception):
    """Something the user can put right: the message says what and how."""
