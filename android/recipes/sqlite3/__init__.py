"""SQLite 3.50.4 with FTS5 for Tidings (p4a's stock recipe builds it without FTS5).

The client store's first migration creates ``messages_fts USING fts5(...)`` for search; without
``SQLITE_ENABLE_FTS5`` the whole store fails to open. FTS5's ranking calls ``log()``, hence
``-lm``. The client's SQL needs SQLite >= 3.24 (UPSERT); the version stays p4a's.
"""

from pythonforandroid.recipes.sqlite3 import Sqlite3Recipe


class TidingsSqlite3Recipe(Sqlite3Recipe):
    version = "3.50.4"
    url = "https://github.com/sqlite/sqlite/archive/refs/tags/version-{version}.tar.gz"
    extra_cflags = ("-DSQLITE_ENABLE_FTS5",)

    def get_recipe_env(self, arch=None, with_flags_in_cc=True):
        env = super().get_recipe_env(arch, with_flags_in_cc)
        env["CFLAGS"] = " ".join([env.get("CFLAGS", ""), *self.extra_cflags]).strip()
        env["LDFLAGS"] = (env.get("LDFLAGS", "") + " -lm").strip()
        return env


recipe = TidingsSqlite3Recipe()
