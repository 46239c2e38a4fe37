"""Everyday messenger features of the client core, each in a module of its own: checks on what
a user writes (:mod:`.validation`), edits and deletions (:mod:`.edits`), typing indicators
(:mod:`.typing`), note to self, settings, blocking and devices (:mod:`.everyday`, the part of
:class:`~tidings.client.Client` they add)."""
