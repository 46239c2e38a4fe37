"""The encrypted history vault, client side: pages, account secrets, export files, strength.

The keys and the sealing are :mod:`tidings.crypto.vault`'s; this package gives them content:
:mod:`.pages` (history pages of one conversation), :mod:`.secrets` (the account secrets record),
:mod:`.export` (the export file) and :mod:`.strength` (a passphrase estimate for the UI).
"""
