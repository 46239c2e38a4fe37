"""The Kivy app: screens and widgets on top of the public client API (`tidings.client.Client`).

Nothing here decides anything about messages; it shows what the client core reports and forwards
what the user does. Start it with :func:`tidings.app.main.run` (`tidings app --server URL
--profile DIR`).
"""
